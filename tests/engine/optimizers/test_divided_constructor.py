"""Weight-decay scaling exp(1/S - 1) and no decay on norm and bias."""
import pytest
import torch.nn as nn

from divdet.engine.optimizers import DividedOptimWrapperConstructor
from divdet.models import DividedResNet


def _groups(num_members: int, scale: bool):
    model = nn.Module()
    model.backbone = DividedResNet('resnet18-d', num_members=num_members)
    ctor = DividedOptimWrapperConstructor(dict(
        type='OptimWrapper', scale_weight_decay=scale,
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)))
    wrapper = ctor(model)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g['params'][0])]: g['weight_decay'] for g in wrapper.optimizer.param_groups}


@pytest.mark.parametrize('num_members,scale', [(1, 1.0), (2, 0.6065), (4, 0.4724)])
def test_weight_decay_scaling(num_members, scale):
    wd = _groups(num_members, scale=True)
    conv = wd['backbone.members.0.stem.0.conv.weight']
    assert conv == pytest.approx(1e-4 * scale, rel=1e-3)
    assert wd['backbone.members.0.stem.0.bn.weight'] == 0
    assert wd['backbone.members.0.stem.0.bn.bias'] == 0


def test_no_scaling_by_default():
    assert _groups(2, scale=False)['backbone.members.1.layer1.0.conv1.weight'] == 1e-4
