"""The width rules reproduce the reference's numbers."""
import math

import pytest

from divdet.models.backbones.division import (
    ARCHS,
    divide_channels,
    scale_dropout,
    weight_decay_scale,
    wrn_cifar_factor,
)


def test_resnet_widths():
    assert {s: ARCHS['resnet50-d'].widths[s]['base_channels'] for s in (1, 2, 4, 8)} == {
        1: 64, 2: 44, 4: 32, 8: 24}
    assert ARCHS['resnet110-cifar'].widths[16]['base_channels'] == 4


def test_wrn_cifar_factor_matches_reference():
    # WRN-28-10: 160/320/640 -> 112/224/448 (S=2) -> 80/160/320 (S=4).
    assert [16 * wrn_cifar_factor(10, s) for s in (1, 2, 4)] == [160, 112, 80]


def test_resnext_divides_cardinality_only():
    widths = ARCHS['resnext101-64x4d'].widths
    assert widths[2] == {'groups': 32} and ARCHS['resnext101-64x4d'].fixed['width_per_group'] == 4


def test_wide_resnet_imagenet_rule():
    assert ARCHS['wide-resnet50-2'].widths[2] == {'width_factor': 1}  # ResNet-50-D members
    assert ARCHS['wide-resnet50-3'].widths[2] == {'width_factor': 2}  # WRN-50-2 members


def test_regularisation_scaling():
    assert weight_decay_scale(2) == pytest.approx(0.607, abs=1e-3)
    assert weight_decay_scale(4) == pytest.approx(0.472, abs=1e-3)
    assert weight_decay_scale(1) == 1
    assert scale_dropout(0.3, 2, 'sqrt') == pytest.approx(0.3 / math.sqrt(2))
    with pytest.raises(ValueError, match='dropout scaling'):
        scale_dropout(0.3, 2, 'cubic')


def test_divide_channels():
    assert divide_channels(512, 2) == 256
    assert divide_channels(512, 2, power=0.5) == 362
    assert divide_channels(512, 1) == 512


def test_widen_scales_channel_widths_on_top_of_the_rule():
    from divdet.models.backbones.division import widen_widths
    from divdet.utils import ConfigError
    resnet = ARCHS['resnet18-d'].widths[1]  # stem 128 (deep stem 2w), base 64
    assert widen_widths(resnet, 1.5) == dict(resnet, stem_channels=192, base_channels=96)
    assert widen_widths(resnet, 1.25)['base_channels'] == 80
    assert widen_widths(resnet, 1.0) == dict(resnet)
    effnet = ARCHS['efficientnet-b0'].widths[2]  # channels rounded to its divisor 4
    wide = widen_widths(effnet, 1.3)
    assert all(c % 4 == 0 for c in wide['channels']) and wide['channels'][0] == 16  # 12*1.3=15.6
    assert wide['divisor'] == effnet['divisor']
    wrn = ARCHS['wide-resnet50-2'].widths[1]  # WRN's k is a factor, not a width: refused
    with pytest.raises(ConfigError, match=r"widen=1.5: wide-resnet50-2 sets its widths by "
                                          r"\['width_factor'\]"):
        widen_widths(wrn, 1.5, 'wide-resnet50-2')
    for bad in (0, -1.0, 'wide'):
        with pytest.raises(ConfigError, match='widen must be'):
            widen_widths(resnet, bad)


def test_widened_backbone_has_the_widths_and_parameters_expected():
    """A convolution's parameters grow with the square of the width: widen=1.5 gives
    about 2.25x the parameters of the S=1 backbone."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')

    def build(s, widen):
        return MODELS.build(dict(type='DividedResNet', arch='resnet18-d', num_members=s,
                                 widen=widen, num_stages=3, strides=(1, 2, 2),
                                 dilations=(1, 1, 1), out_indices=(1, 2)))
    base, wide = build(1, 1.0), build(1, 1.5)
    assert base.member_out_channels == (128, 256) and wide.member_out_channels == (192, 384)
    ratio = sum(p.numel() for p in wide.parameters()) / sum(p.numel() for p in base.parameters())
    assert 2.2 < ratio < 2.3
    assert build(2, 1.0).member_out_channels == (88, 176)  # the division rule alone
