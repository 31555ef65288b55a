"""Model utilities: the division (width) rules."""
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

__all__ = [
    'ARCHS', 'Arch', 'divide_channels', 'divide_width', 'get_arch', 'scale_dropout',
    'weight_decay_scale',
    'wrn_cifar_factor'
]
