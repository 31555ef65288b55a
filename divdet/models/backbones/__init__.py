"""Divided backbones and the member networks they are built from."""
from .cifar_members import DenseNetCIFAR, PyramidNet, SEResNetCIFAR, ShakeResNet
from .divided_resnet import MEMBER_CLASSES, DividedBackbone, DividedResNet, stage_out_channels
from .division import (
                       ARCHS,
                       Arch,
                       divide_channels,
                       divide_width,
                       get_arch,
                       scale_dropout,
                       weight_decay_scale,
                       wrn_cifar_factor,
)
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
    'ARCHS', 'Arch', 'divide_channels', 'divide_width', 'get_arch', 'scale_dropout',
    'weight_decay_scale', 'wrn_cifar_factor',
    'DeepResNetV1d', 'DenseNetCIFAR', 'DividedBackbone', 'DividedResNet', 'EFFICIENTNET_SCALING',
    'EfficientNetMember', 'MEMBER_CLASSES', 'PreActWideResNet', 'PyramidNet', 'ResNetCIFAR',
    'ResNeXtCIFAR', 'SENet154', 'SEResNetCIFAR', 'ShakeDrop', 'ShakeResNet', 'WideBottleneck',
    'WideResNetV1d', 'shake_shake', 'stage_out_channels'
]
