"""DividedBackbone: S independent members of one family with the paper's widths.

Output contract (used by every divided neck and head):

    forward(x: Tensor (N, 3, H, W) or (N, S, 3, H, W)) -> tuple of S tuples
    outs[i][j]: member i's feature map for out index j, shape
    (N, member_out_channels[j], H / stride_j, W / stride_j)

A 4-D input is shared by all members; a 5-D input gives member i its own view
``x[:, i]`` (co-training with one augmented view per member).

All members share the architecture family and depth; their widths come from
:mod:`divdet.models.backbones.division`. With ``num_members=1`` the single member
is exactly the undivided network.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmengine.model import ModuleList
from mmpretrain.models.backbones import ResNeSt, ResNet, ResNetV1d, ResNeXt, SEResNet, SEResNeXt

from divdet.models.backbones.division import get_arch, scale_dropout, widen_widths
from divdet.models.divided.part import DividedPart
from divdet.registry import register_model
from divdet.utils.errors import ConfigError

from .cifar_members import DenseNetCIFAR, PyramidNet, SEResNetCIFAR, ShakeResNet
from .efficientnet_members import EfficientNetMember
from .resnet_members import (
    DeepResNetV1d,
    PreActWideResNet,
    ResNetCIFAR,
    ResNeXtCIFAR,
    SENet154,
    WideResNetV1d,
)

#: Member classes an :class:`~divdet.models.backbones.division.Arch` may name.
MEMBER_CLASSES = {
    'ResNet': ResNet,
    'ResNetV1d': ResNetV1d,
    'DeepResNetV1d': DeepResNetV1d,
    'SEResNet': SEResNet,
    'ResNeXt': ResNeXt,
    'SEResNeXt': SEResNeXt,
    'ResNeSt': ResNeSt,
    'WideResNetV1d': WideResNetV1d,
    'ResNetCIFAR': ResNetCIFAR,
    'ResNeXtCIFAR': ResNeXtCIFAR,
    'PreActWideResNet': PreActWideResNet,
    'SEResNetCIFAR': SEResNetCIFAR,
    'SENet154': SENet154,
    'PyramidNet': PyramidNet,
    'ShakeResNet': ShakeResNet,
    'DenseNetCIFAR': DenseNetCIFAR,
    'EfficientNetMember': EfficientNetMember,
}


def stage_out_channels(member: torch.nn.Module) -> tuple[int, ...]:
    """Output channels of every stage of a member network."""
    if hasattr(member, 'res_layers'):  # mmpretrain ResNet family
        return tuple(getattr(member, name)[-1].out_channels for name in member.res_layers)
    return tuple(member.out_channels)


@register_model
class DividedBackbone(DividedPart):
    """A backbone divided into ``num_members`` members of one family.

    Args:
        arch: architecture name, a key of
            :data:`divdet.models.backbones.division.ARCHS` (e.g. ``'resnet50-d'``,
            ``'wrn28-10-cifar'``, ``'pyramidnet272-cifar'``, ``'efficientnet-b0'``).
        num_members: the split factor S. Values without a rule are rejected.
        out_indices: stages whose outputs are returned (member default if None).
        drop_rate: dropout of the undivided network (families that use
            dropout, e.g. WRN); each member gets it scaled by ``dropout_scaling``.
        drop_path_rate: stochastic depth of the undivided network (mmpretrain
            ResNets, EfficientNet); scaled like ``drop_rate``.
        dropout_scaling: ``'linear'`` (p / S), ``'sqrt'`` (p / sqrt(S)) or
            ``'none'``; None takes the family's rule (sqrt for EfficientNet,
            PyramidNet, DenseNet and SENet, as the reference does). It also scales
            the family's other probabilities (``shakedrop_prob``).
        widen: width multiplier on top of the division rule (1 = the rule's widths;
            e.g. 1.5 for an S=1 network 1.5x as wide), see
            :func:`~divdet.models.backbones.division.widen_widths`.
        member_init_cfg: optional list of S init configs, one per member (e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``).
            A checkpoint with member-prefixed keys (``members.0.conv1...``)
            loads through the usual ``init_cfg`` / ``load_from``.
        init_cfg: init config of the whole divided backbone.
        **kwargs: passed to every member (``num_stages``, ``strides``,
            ``dilations``, ``frozen_stages``, ``norm_cfg``, ``norm_eval``,
            ``with_cp``, ...). SSD300 truncates a ResNet after layer3 with
            ``num_stages=3, strides=(1, 2, 1), out_indices=(2,)``.
    """

    def __init__(self, arch: str, num_members: int = 2,
                 out_indices: Optional[Sequence[int]] = None, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, dropout_scaling: Optional[str] = None,
                 widen: float = 1.0, member_init_cfg: Optional[Sequence[dict]] = None,
                 init_cfg: Optional[dict] = None, **kwargs) -> None:
        super().__init__(num_members, init_cfg)
        spec = get_arch(arch, num_members)
        if member_init_cfg is not None and len(member_init_cfg) != num_members:
            raise ConfigError(f'member_init_cfg needs one entry per member ({num_members}), '
                             f'found {len(member_init_cfg)}')
        self.arch = arch
        member_cls = MEMBER_CLASSES[spec.member]
        member_kwargs = dict(spec.fixed, **widen_widths(spec.widths[num_members], widen, arch),
                             **kwargs)
        self.widen = widen
        if out_indices is not None:
            member_kwargs['out_indices'] = tuple(out_indices)
        scaling = dropout_scaling or spec.dropout_scaling
        #: How this backbone scales probabilities with S (its heads' dropout too).
        self.dropout_scaling = scaling
        probs = dict(drop_rate=drop_rate, drop_path_rate=drop_path_rate)
        probs.update({k: member_kwargs[k] for k in spec.dropout_keys if k in member_kwargs})
        for key, p in probs.items():
            if p and key not in spec.dropout_keys:
                raise ConfigError(f'arch {arch!r} has no {key}; it supports {spec.dropout_keys}')
            if p:
                member_kwargs[key] = scale_dropout(p, num_members, scaling)
        self.members = ModuleList()
        for i in range(num_members):
            cfg = dict(member_kwargs)
            if member_init_cfg is not None:
                cfg['init_cfg'] = member_init_cfg[i]
            self.members.append(member_cls(**cfg))
        first = self.members[0]
        channels = stage_out_channels(first)
        #: Output channels of one member, one per out index.
        self.member_out_channels: tuple[int, ...] = tuple(channels[i] for i in first.out_indices)

    def forward(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], ...]:
        """Run every member on the shared input or on its own view.

        Args:
            x: images, (N, C, H, W) shared by all members, or (N, S, C, H, W)
                with one view per member.

        Returns:
            One tuple of feature maps per member (see the module docstring).

        Raises:
            ValueError: a 5-D input whose number of views is not S.
        """
        return super().forward(x)

    def forward_member(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Member ``i``'s feature maps from its input (``member_input(x, i)``)."""
        return self.members[i](x)

    def member_input(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Member ``i``'s view ``x[:, i]`` of a 5-D input, else the shared ``x``."""
        return x[:, i] if x.dim() == 5 else x

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() == 5 and x.shape[1] != self.num_members:
            raise ValueError(f'got {x.shape[1]} views per image for {self.num_members} '
                             'members; expected one view per member')


@register_model
class DividedResNet(DividedBackbone):
    """:class:`DividedBackbone` under the name the ResNet-family configs use."""
