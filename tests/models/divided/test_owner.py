"""The owner of the divided parts is shared by the detector and the classifier: S is
checked once, every part is built with it, and the parts run through its runtime."""
import pytest
from mmengine.registry import MODELS

from divdet.models import DividedImageClassifier, DividedSingleStageDetector
from divdet.models.divided import DividedOwner, check_num_members
from divdet.utils.errors import ConfigError


def test_detector_and_classifier_are_owners():
    assert issubclass(DividedSingleStageDetector, DividedOwner)
    assert issubclass(DividedImageClassifier, DividedOwner)
    assert DividedSingleStageDetector.owner_name == 'detector'
    assert DividedImageClassifier.owner_name == 'classifier'


@pytest.mark.parametrize('value', [0, -1, 2.0, True, '2'])
def test_num_members_is_a_positive_integer(value):
    with pytest.raises(ConfigError, match='num_members must be a positive integer'):
        check_num_members(value)


def test_a_part_with_another_s_names_the_owner():
    with pytest.raises(ConfigError, match=r'S is set once, on the classifier: '
                                          r'model.neck.num_members=3 disagrees with '
                                          r'model.num_members=2'):
        DividedImageClassifier.build_part(MODELS, dict(type='DividedNeck', num_members=3,
                                                       neck=dict(type='GlobalAveragePooling')),
                                          2, 'neck')


def test_parts_run_through_the_owners_runtime():
    model = DividedImageClassifier(
        num_members=2, member_execution='sequential',
        backbone=dict(type='DividedResNet', arch='resnet110-cifar'),
        neck=dict(type='DividedNeck', neck=dict(type='GlobalAveragePooling')),
        head=dict(type='DividedClsHead', head=dict(type='LinearClsHead', num_classes=10)))
    assert model.num_members == 2 and model.runtime.execution == 'sequential'
    for part in (model.backbone, model.neck, model.head):
        assert part.runtime is model.runtime
    assert model.channels_last is False and not model._in_channels_last
