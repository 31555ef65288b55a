"""EfficientNet members with explicit per-stage channels (Tan and Le, ICML 2019).

mmpretrain's ``EfficientNet`` scales a fixed channel table with a divisor of 8; a
divided EfficientNet needs its own table and divisor per S (see
:data:`divdet.models.backbones.division.EFFICIENTNET_WIDTHS`), so this member takes the
channels as arguments and builds mmpretrain's ``InvertedResidual`` (MBConv with SE)
blocks from them. B0-B7 differ by the width and depth multipliers of
:data:`EFFICIENTNET_SCALING`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmpretrain.models.utils import InvertedResidual, make_divisible

from divdet.registry import register_model
from divdet.utils.errors import ConfigError

from .staged_member import StagedMember

#: Width multiplier, depth multiplier and input resolution of B0-B7.
EFFICIENTNET_SCALING = {
    'b0': (1.0, 1.0, 224), 'b1': (1.0, 1.1, 240), 'b2': (1.1, 1.2, 260),
    'b3': (1.2, 1.4, 300), 'b4': (1.4, 1.8, 380), 'b5': (1.6, 2.2, 456),
    'b6': (1.8, 2.6, 528), 'b7': (2.0, 3.1, 600),
}
#: Per stage of B0: expand ratio t, repeats n, kernel k, stride s (channels come apart).
EFFICIENTNET_STAGES = ((1, 1, 3, 1), (6, 2, 3, 2), (6, 2, 5, 2), (6, 3, 3, 2),
                       (6, 3, 5, 1), (6, 4, 5, 2), (6, 1, 3, 1))
#: Stages whose stride is 1 on CIFAR (0-based; the reference's stages 3 and 6).
CIFAR_UNSTRIDED = (2, 5)


@register_model
class EfficientNetMember(StagedMember):
    """EfficientNet B0-B7 with the given stem, stage and head channels.

    Stem conv3x3 stride 2, seven MBConv stages (SE ratio 0.25 of the block input,
    drop-path rising linearly to ``drop_path_rate``), a 1x1 head conv after the
    last stage; every conv is followed by BN and Swish.

    Args:
        arch: ``'b0'`` ... ``'b7'``: width and depth multipliers.
        stem_channels: stem channels of B0 (scaled by the width multiplier).
        channels: output channels of the seven stages of B0.
        head_channels: channels of the head conv of B0.
        divisor: every scaled channel count is rounded to a multiple of it.
        cifar: strides of stages 3 and 6 set to 1 (32x32 inputs).
        drop_path_rate: stochastic depth of the last block.
        num_stages: stages built (1-7); fewer drop the later stages and the head,
            for a detector that reads earlier feature maps.
        out_indices: stages whose outputs are returned; stage 6's is the head's.
        frozen_stages, norm_eval: as mmpretrain's backbones.
        init_cfg: mmengine init config; None takes the EfficientNet paper's init
            (:meth:`init_weights`).
        conv_cfg, norm_cfg, act_cfg, with_cp: as mmpretrain's ``EfficientNet``.
    """

    def __init__(self, arch: str = 'b0', stem_channels: int = 32,
                 channels: Sequence[int] = (16, 24, 40, 80, 112, 192, 320),
                 head_channels: int = 1280, divisor: int = 8, cifar: bool = False,
                 drop_path_rate: float = 0.0, num_stages: int = 7,
                 out_indices: Sequence[int] = (6, ),
                 frozen_stages: int = -1, norm_eval: bool = False,
                 conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None, with_cp: bool = False,
                 init_cfg=None) -> None:
        self._paper_init = init_cfg is None
        if init_cfg is None:  # convs: init_weights
            init_cfg = [dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)]
        super().__init__(out_indices, frozen_stages, norm_eval, init_cfg)
        if arch not in EFFICIENTNET_SCALING:
            raise ConfigError(f'EfficientNet arch must be one of {sorted(EFFICIENTNET_SCALING)}, '
                              f'found {arch!r}')
        if len(channels) != len(EFFICIENTNET_STAGES):
            raise ConfigError(f'EfficientNet needs {len(EFFICIENTNET_STAGES)} stage channels, '
                              f'found {len(channels)}')
        if not 1 <= num_stages <= len(EFFICIENTNET_STAGES):
            raise ConfigError(f'EfficientNet num_stages must be in 1..{len(EFFICIENTNET_STAGES)}, '
                              f'found {num_stages}')
        conv_cfg = conv_cfg or dict(type='Conv2dAdaptivePadding')
        norm_cfg = norm_cfg or dict(type='BN', eps=1e-3)
        act_cfg = act_cfg or dict(type='Swish')
        width, depth, _ = EFFICIENTNET_SCALING[arch]  # the resolution is the configs'
        self.arch = arch

        def scaled(c: int) -> int:
            return make_divisible(c * width, divisor)

        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        in_ch = scaled(stem_channels)
        self.stem = ConvModule(3, in_ch, 3, stride=2, padding=1, **common)
        stages = EFFICIENTNET_STAGES[:num_stages]
        repeats = [int(math.ceil(n * depth)) for _, n, _, _ in stages]
        rates = torch.linspace(0, drop_path_rate, sum(repeats)).tolist()
        outs = []
        for i, ((t, _, k, s), n, c) in enumerate(zip(stages, repeats, channels)):
            s = 1 if cifar and i in CIFAR_UNSTRIDED else s
            out_ch, blocks = scaled(c), []
            for j in range(n):
                mid = in_ch * t
                se_cfg = dict(channels=mid, ratio=4 * t, divisor=1,
                              act_cfg=(act_cfg, dict(type='Sigmoid')))
                blocks.append(InvertedResidual(
                    in_ch, out_ch, mid, kernel_size=k, stride=s if j == 0 else 1,
                    se_cfg=se_cfg, drop_path_rate=rates.pop(0), with_cp=with_cp, **common))
                in_ch = out_ch
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            outs.append(out_ch)
        self.head = None
        if num_stages == len(EFFICIENTNET_STAGES):
            outs[-1] = scaled(head_channels)
            self.head = ConvModule(in_ch, outs[-1], 1, **common)
        self.set_stages('stem', [f'layer{i + 1}' for i in range(num_stages)], outs)

    def init_weights(self) -> None:
        """The paper's init: every conv normal with std sqrt(2 / fan_out), where
        fan_out = k * k * out_channels / groups, unit BN scales.

        This is the init of the paper's code (and timm's): mmengine's ``Kaiming``
        counts a depthwise conv's fan-out as k * k * C and draws its weights
        sqrt(C) times smaller. With a user's ``init_cfg`` (a checkpoint, say)
        only mmengine's init runs.
        """
        super().init_weights()
        if not self._paper_init:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def after_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """The 1x1 head conv after the last of the seven stages."""
        return self.head(x) if self.head is not None and i == 6 else x
