"""Member networks that mmpretrain does not ship, built from its ResNet parts.

- :class:`DeepResNetV1d`: mmpretrain's ResNetV1d with depth 200 added.
- :class:`WideResNetV1d`: Wide-ResNet-50-k / 101-k in the ResNet-D form (bottleneck
  mid width ``64 * k * 2**stage``, outer widths as ResNet-50).
- :class:`ResNetCIFAR`: the three-stage CIFAR ResNet-110 / ResNet-164.
- :class:`ResNeXtCIFAR`: ResNeXt-29 (8x64d, 16x64d) for CIFAR.
- :class:`PreActWideResNet`: the pre-activation WRN-d-k for CIFAR (Zagoruyko
  and Komodakis, 2016), with dropout between the two convs of a block.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.backbones.resnet import BasicBlock, Bottleneck, ResNetV1d
from mmpretrain.models.backbones.resnet_cifar import ResNet_CIFAR
from mmpretrain.models.backbones.resnext import Bottleneck as ResNeXtBottleneck
from mmpretrain.models.backbones.resnext import ResNeXt
from torch.nn.modules.batchnorm import _BatchNorm

from divdet.registry import register_model
from divdet.utils.errors import ConfigError


class WideBottleneck(Bottleneck):
    """ResNet bottleneck whose 1x1-3x3-1x1 mid width is ``width_factor`` times wider.

    Args:
        in_channels: input channels.
        out_channels: output channels (unchanged by ``width_factor``).
        width_factor: k of WRN-50-k; 1 gives the plain ResNet bottleneck.
        **kwargs: other arguments of mmpretrain's ``Bottleneck``.
    """

    def __init__(self, in_channels: int, out_channels: int, width_factor: float = 1,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        if width_factor == 1:
            return
        self.mid_channels = int(self.mid_channels * width_factor)
        mid = self.mid_channels
        for i, ch in ((1, mid), (2, mid)):
            name, norm = build_norm_layer(self.norm_cfg, ch, postfix=i)
            setattr(self, name, norm)
        self.conv1 = build_conv_layer(self.conv_cfg, in_channels, mid, kernel_size=1,
                                      stride=self.conv1_stride, bias=False)
        self.conv2 = build_conv_layer(self.conv_cfg, mid, mid, kernel_size=3,
                                      stride=self.conv2_stride, padding=self.dilation,
                                      dilation=self.dilation, bias=False)
        self.conv3 = build_conv_layer(self.conv_cfg, mid, out_channels, kernel_size=1,
                                      bias=False)


@register_model
class DeepResNetV1d(ResNetV1d):
    """mmpretrain's ``ResNetV1d`` with depth 200 besides its 18-152: the 200-layer
    ImageNet ResNet (He et al., "Identity Mappings in Deep Residual Networks",
    ECCV 2016), bottleneck blocks (3, 24, 36, 3)."""

    arch_settings = {**ResNetV1d.arch_settings, 200: (Bottleneck, (3, 24, 36, 3))}


@register_model
class WideResNetV1d(ResNetV1d):
    """Wide-ResNet-50-k, ResNet-D form: ResNetV1d with wider bottlenecks.

    Args:
        width_factor: k; the mid width of every bottleneck is multiplied by it.
        **kwargs: arguments of mmpretrain's ``ResNetV1d``.
    """

    arch_settings = {50: (WideBottleneck, (3, 4, 6, 3)), 101: (WideBottleneck, (3, 4, 23, 3))}

    def __init__(self, width_factor: float = 2, **kwargs) -> None:
        self.width_factor = width_factor
        super().__init__(**kwargs)

    def make_res_layer(self, **kwargs):  # noqa: D102
        return super().make_res_layer(width_factor=self.width_factor, **kwargs)


@register_model
class ResNetCIFAR(ResNet_CIFAR):
    """Three-stage CIFAR ResNet: 3x3 stem of w channels, stages w*(1,2,4)*expansion.

    ResNet-110 uses basic blocks (18 per stage), ResNet-164 bottlenecks (18 per
    stage). Defaults give the CIFAR layout: ``num_stages=3``, strides (1, 2, 2).
    """

    arch_settings = {110: (BasicBlock, (18, 18, 18)), 164: (Bottleneck, (18, 18, 18))}

    def __init__(self, depth: int, num_stages: int = 3, strides: Sequence[int] = (1, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1), out_indices: Sequence[int] = (2, ),
                 stem_channels: int = 16, base_channels: int = 16, **kwargs) -> None:
        super().__init__(depth, num_stages=num_stages, strides=strides, dilations=dilations,
                         out_indices=out_indices, stem_channels=stem_channels,
                         base_channels=base_channels, **kwargs)


@register_model
class ResNeXtCIFAR(ResNeXt, ResNet_CIFAR):
    """ResNeXt-29 for CIFAR: 3x3 stem of 64, three stages of 3 bottlenecks.

    ``groups`` x ``width_per_group`` is the "8x64d" of the name; stage outputs
    are 256, 512, 1024.
    """

    arch_settings = {29: (ResNeXtBottleneck, (3, 3, 3))}

    def __init__(self, depth: int = 29, groups: int = 8, width_per_group: int = 64,
                 num_stages: int = 3, strides: Sequence[int] = (1, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1), out_indices: Sequence[int] = (2, ),
                 stem_channels: int = 64, base_channels: int = 64, **kwargs) -> None:
        super().__init__(depth, groups=groups, width_per_group=width_per_group,
                         num_stages=num_stages, strides=strides, dilations=dilations,
                         out_indices=out_indices, stem_channels=stem_channels,
                         base_channels=base_channels, **kwargs)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 with a 1x1 projection when needed.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first conv.
        drop_rate: dropout probability between the two convs.
        norm_cfg: norm layer config.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, drop_rate: float,
                 norm_cfg: dict) -> None:
        super().__init__()
        self.bn1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = build_norm_layer(norm_cfg, out_channels)[1]
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        out = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return out + identity


@register_model
class PreActWideResNet(BaseModule):
    """Pre-activation Wide-ResNet WRN-d-k for CIFAR.

    Stem conv3x3 (16), three stages of ``(d - 4) / 6`` pre-activation blocks of
    widths 16k, 32k, 64k (strides 1, 2, 2), then BN-ReLU after the last stage.

    Args:
        depth: d; ``(d - 4) % 6 == 0``.
        widen_factor: k.
        drop_rate: dropout between the convs of each block.
        out_indices: stages whose outputs are returned.
        frozen_stages: stages (0 = stem) whose parameters are frozen; -1 none.
        norm_cfg: norm layer config.
        norm_eval: keep norm layers in eval mode during training.
        init_cfg: mmengine init config.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, drop_rate: float = 0.0,
                 in_channels: int = 3, out_indices: Sequence[int] = (2, ),
                 frozen_stages: int = -1, norm_cfg: Optional[dict] = None,
                 norm_eval: bool = False, init_cfg=None) -> None:
        if init_cfg is None:
            init_cfg = [dict(type='Kaiming', layer='Conv2d', mode='fan_out',
                             nonlinearity='relu'),
                        dict(type='Constant', val=1, layer=['_BatchNorm'])]
        super().__init__(init_cfg)
        norm_cfg = norm_cfg or dict(type='BN')
        if (depth - 4) % 6 != 0:
            raise ConfigError(f'WRN depth must be 6n + 4 (16, 22, 28, 40, ...), found {depth}')
        if not set(out_indices) <= {0, 1, 2}:
            raise ConfigError(f'out_indices must be within (0, 1, 2), found {out_indices}')
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        in_ch = 16
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2))):
            blocks = [PreActBlock(in_ch if j == 0 else width, width, stride if j == 0 else 1,
                                  drop_rate, norm_cfg) for j in range(n)]
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            in_ch = width
        self.bn_final = build_norm_layer(norm_cfg, in_ch)[1]
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = tuple(widths)
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        modules = [self.conv1] + [getattr(self, f'layer{i}') for i in (1, 2, 3)]
        for m in modules[:self.frozen_stages + 1]:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(N, 3, H, W) -> one (N, 16k * 2**i, H / 2**i, W / 2**i) map per out index."""
        x = self.conv1(x)
        outs = []
        for i in range(3):
            x = getattr(self, f'layer{i + 1}')(x)
            if i == 2:
                x = self.relu(self.bn_final(x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> PreActWideResNet:
        """Set train mode, keeping frozen stages and (optionally) norms in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
