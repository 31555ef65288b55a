"""The width rules reproduce the reference's numbers."""
import math

import pytest

from divdet.models.utils import ARCHS, divide_channels, scale_dropout, weight_decay_scale
from divdet.models.utils.division import wrn_cifar_factor


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
