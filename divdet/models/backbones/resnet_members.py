"""Member networks that mmpretrain does not ship, built from its ResNet parts.

- :class:`DeepResNetV1d`: mmpretrain's ResNetV1d with depth 200 added.
- :class:`WideResNetV1d`: Wide-ResNet-50-k / 101-k in the ResNet-D form (bottleneck
  mid width ``64 * k * 2**stage``, outer widths as ResNet-50).
- :class:`ResNetCIFAR`: the three-stage CIFAR ResNet-110 / ResNet-164.
- :class:`ResNeXtCIFAR`: ResNeXt-29 (8x64d, 16x64d) for CIFAR.
- :class:`PreActWideResNet`: the pre-activation WRN-d-k for CIFAR (Zagoruyko
  and Komodakis, 2016), with dropout between the two convs of a block.
- :class:`SENet154`: SENet-154 for ImageNet (grouped SE bottlenecks, 3x3 shortcuts).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmpretrain.models.backbones.resnet import BasicBlock, Bottleneck, ResNetV1d
from mmpretrain.models.backbones.resnet_cifar import ResNet_CIFAR
from mmpretrain.models.backbones.resnext import Bottleneck as ResNeXtBottleneck
from mmpretrain.models.backbones.resnext import ResNeXt
from mmpretrain.models.backbones.seresnet import SEBottleneck, SEResNet

from divdet.registry import register_model
from divdet.utils.errors import ConfigError

from .staged_member import StagedMember


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
class PreActWideResNet(StagedMember):
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
        super().__init__(out_indices, frozen_stages, norm_eval, init_cfg)
        norm_cfg = norm_cfg or dict(type='BN')
        if (depth - 4) % 6 != 0:
            raise ConfigError(f'WRN depth must be 6n + 4 (16, 22, 28, 40, ...), found {depth}')
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        in_ch = 16
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2))):
            blocks = [PreActBlock(in_ch if j == 0 else width, width, stride if j == 0 else 1,
                                  drop_rate, norm_cfg) for j in range(n)]
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            in_ch = width
        self.bn_final = build_norm_layer(norm_cfg, in_ch)[1]
        self.relu = nn.ReLU(inplace=True)
        self.set_stages('conv1', ('layer1', 'layer2', 'layer3'), widths)

    def after_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """BN-ReLU after the last stage."""
        return self.relu(self.bn_final(x)) if i == 2 else x


class SENetBottleneck(SEBottleneck):
    """SENet-154's bottleneck: 1x1 conv to ``2 * planes * groups / 64`` channels, grouped
    3x3 conv to ``4 * planes * groups / 64``, 1x1 conv to ``4 * planes``, SE, residual
    (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018; ``planes = out / 4``).

    Args:
        in_channels: input channels.
        out_channels: output channels (``4 * planes``).
        groups: groups of the 3x3 conv (64 in SENet-154); the mid widths scale with it.
        **kwargs: other arguments of mmpretrain's SE ``Bottleneck``.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 64,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        planes = out_channels // self.expansion
        if (2 * planes * groups) % 64:
            raise ConfigError(f'SENet groups must divide the bottleneck widths; found '
                              f'groups={groups} at {planes} planes')
        w1, w2 = 2 * planes * groups // 64, 4 * planes * groups // 64
        self.mid_channels = w2
        for i, ch in ((1, w1), (2, w2)):
            name, norm = build_norm_layer(self.norm_cfg, ch, postfix=i)
            setattr(self, name, norm)
        self.conv1 = build_conv_layer(self.conv_cfg, in_channels, w1, kernel_size=1,
                                      stride=self.conv1_stride, bias=False)
        self.conv2 = build_conv_layer(self.conv_cfg, w1, w2, kernel_size=3,
                                      stride=self.conv2_stride, padding=self.dilation,
                                      dilation=self.dilation, groups=groups, bias=False)
        self.conv3 = build_conv_layer(self.conv_cfg, w2, out_channels, kernel_size=1,
                                      bias=False)


@register_model
class SENet154(SEResNet):
    """SENet-154 on ImageNet: 3x3 deep stem (64, 64, 128), stages of (3, 8, 36, 3)
    :class:`SENetBottleneck` of ``groups`` groups, and a 3x3 strided conv (not a
    1x1) in the downsampling shortcut of stages 2-4.

    Args:
        groups: groups of every 3x3 conv (64; divided as ``64 / S``).
        **kwargs: arguments of mmpretrain's ``SEResNet``.
    """

    arch_settings = {154: (SENetBottleneck, (3, 8, 36, 3))}

    def __init__(self, depth: int = 154, groups: int = 64, stem_channels: int = 128,
                 deep_stem: bool = True, **kwargs) -> None:
        self.groups = groups
        super().__init__(depth, stem_channels=stem_channels, deep_stem=deep_stem, **kwargs)
        for name in self.res_layers[1:]:
            block = getattr(self, name)[0]
            conv = block.downsample[-2]  # 1x1 conv, then norm
            stride = block.conv2_stride
            block.downsample = nn.Sequential(
                build_conv_layer(self.conv_cfg, conv.in_channels, conv.out_channels,
                                 kernel_size=3, stride=stride, padding=1, bias=False),
                build_norm_layer(self.norm_cfg, conv.out_channels)[1])

    def make_res_layer(self, **kwargs):  # noqa: D102
        return super().make_res_layer(groups=self.groups, **kwargs)
