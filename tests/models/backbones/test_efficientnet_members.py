"""EfficientNetMember: the paper's init of grouped (depthwise) convs."""
import math

import torch.nn as nn

from divdet.models import EfficientNetMember


def _depthwise(member):
    return [m for m in member.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]


def test_default_init_counts_fan_out_per_group():
    member = EfficientNetMember(num_stages=3, out_indices=(2, ))
    member.init_weights()
    convs = _depthwise(member)
    assert convs
    for m in convs:
        expected = math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1]))
        # mmengine's Kaiming would give expected / sqrt(C), C >= 16 here.
        assert abs(m.weight.std().item() / expected - 1) < 0.25, m


def test_user_init_cfg_is_left_to_mmengine():
    cfg = [dict(type='Kaiming', layer='Conv2d'), dict(type='Constant', layer='_BatchNorm', val=1)]
    member = EfficientNetMember(num_stages=3, out_indices=(2, ), init_cfg=cfg)
    member.init_weights()
    for m in _depthwise(member):
        per_group = math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1]))
        assert m.weight.std().item() < 0.5 * per_group, m
