"""Divided backbones and the member networks they are built from."""
from .cifar_members import DenseNetCIFAR, PyramidNet, SEResNetCIFAR, ShakeResNet
from .divided_resnet import MEMBER_CLASSES, DividedBackbone, DividedResNet, stage_out_channels
from .efficientnet_members import EFFICIENTNET_SCALING, EfficientNetMember
from .resnet_members import (
                             DeepResNetV1d,
                             PreActWideResNet,
                             ResNetCIFAR,
                             ResNeXtCIFAR,
                             SENet154,
                             WideBottleneck,
                             WideResNetV1d,
)
from .shake import ShakeDrop, shake_shake

__all__ = [
    'DeepResNetV1d', 'DenseNetCIFAR', 'DividedBackbone', 'DividedResNet', 'EFFICIENTNET_SCALING',
    'EfficientNetMember', 'MEMBER_CLASSES', 'PreActWideResNet', 'PyramidNet', 'ResNetCIFAR',
    'ResNeXtCIFAR', 'SENet154', 'SEResNetCIFAR', 'ShakeDrop', 'ShakeResNet', 'WideBottleneck',
    'WideResNetV1d', 'shake_shake', 'stage_out_channels'
]
