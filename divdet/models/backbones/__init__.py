"""Divided backbones and the member networks they are built from."""
from .divided_resnet import MEMBER_CLASSES, DividedResNet, stage_out_channels
from .resnet_members import (
                             DeepResNetV1d,
                             PreActWideResNet,
                             ResNetCIFAR,
                             ResNeXtCIFAR,
                             WideBottleneck,
                             WideResNetV1d,
)

__all__ = [
    'DeepResNetV1d', 'DividedResNet', 'MEMBER_CLASSES', 'stage_out_channels',
    'PreActWideResNet', 'ResNetCIFAR', 'ResNeXtCIFAR', 'WideBottleneck', 'WideResNetV1d'
]
