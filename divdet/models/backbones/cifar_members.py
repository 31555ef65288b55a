"""CIFAR member networks that mmpretrain does not ship.

- :class:`PyramidNet`: bottleneck PyramidNet with ShakeDrop (Han et al., "Deep
  Pyramidal Residual Networks", CVPR 2017; Yamada et al., 2018).
- :class:`ShakeResNet`: Shake-Shake ResNet-26 2xWd (Gastaldi, 2017).
- :class:`SEResNetCIFAR`: SE-ResNet-110 / -164 (Hu et al., "Squeeze-and-Excitation
  Networks", CVPR 2018), three bottleneck stages of mmpretrain's SE blocks.
- :class:`DenseNetCIFAR`: DenseNet-BC for CIFAR (Huang et al., CVPR 2017), mmpretrain's
  dense blocks and transitions behind a 3x3 stem, optionally with ShakeDrop.

Each returns one feature map per out index, like mmpretrain's backbones.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmpretrain.models.backbones import DenseNet, SEResNet
from mmpretrain.models.backbones.resnet_cifar import ResNet_CIFAR
from mmpretrain.models.backbones.seresnet import SEBottleneck

from divdet.registry import register_model
from divdet.utils.errors import ConfigError

from .shake import ShakeDrop, linear_shakedrop_probs, shake_shake
from .staged_member import StagedMember

_BN = dict(type='BN')


class PyramidBottleneck(nn.Module):
    """BN-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN, ShakeDrop, plus a shortcut that
    average-pools when strided and pads the missing channels with zeros.

    Args:
        in_channels: input channels.
        planes: bottleneck width; the output has ``4 * planes`` channels.
        stride: stride of the 3x3 conv.
        p_shakedrop: ShakeDrop probability of this block.
        norm_cfg: norm layer config.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, p_shakedrop: float,
                 norm_cfg: dict = _BN) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        if out_channels < in_channels:
            raise ConfigError(f'PyramidNet block narrows {in_channels} -> {out_channels} '
                              'channels; its widths must not decrease')
        norm = [build_norm_layer(norm_cfg, c)[1] for c in (in_channels, planes, planes,
                                                           out_channels)]
        self.bn1, self.bn2, self.bn3, self.bn4 = norm
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shake_drop = ShakeDrop(p_shakedrop)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, 4 * planes, H / stride, W / stride)."""
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        out = self.shake_drop(self.bn4(out))
        shortcut = x
        if self.stride != 1:
            shortcut = F.avg_pool2d(shortcut, 2, self.stride, ceil_mode=True)
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return out + shortcut


@register_model
class PyramidNet(StagedMember):
    """Bottleneck PyramidNet for CIFAR: the width grows by ``alpha / (3n)`` every block.

    Stem conv3x3 (16) + BN, three stages of ``n = (depth - 2) / 9`` bottlenecks
    (strides 1, 2, 2), then BN-ReLU. ShakeDrop probabilities grow linearly with the
    block index to ``shakedrop_prob``.

    Args:
        depth: 9n + 2 (164, 272, ...).
        alpha: total width added over all blocks (the bottleneck width of the last
            block is ``16 + alpha``).
        shakedrop_prob: ShakeDrop probability of the last block; 0 disables it.
        out_indices: stages whose outputs are returned.
        frozen_stages, norm_eval, norm_cfg, init_cfg: as mmpretrain's backbones.
    """

    def __init__(self, depth: int = 272, alpha: float = 200, shakedrop_prob: float = 0.5,
                 in_channels: int = 3, out_indices: Sequence[int] = (2, ),
                 frozen_stages: int = -1, norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None, init_cfg=None) -> None:
        super().__init__(out_indices, frozen_stages, norm_eval, init_cfg)
        norm_cfg = norm_cfg or _BN
        if (depth - 2) % 9 != 0:
            raise ConfigError(f'bottleneck PyramidNet depth must be 9n + 2 (164, 272, ...), '
                              f'found {depth}')
        n = (depth - 2) // 9
        add_rate = alpha / (3 * n)
        probs = linear_shakedrop_probs(shakedrop_prob, 3 * n)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
                                  build_norm_layer(norm_cfg, 16)[1])
        width, in_ch, widths = 16.0, 16, []
        for i, stride in enumerate((1, 2, 2)):
            blocks = []
            for j in range(n):
                width += add_rate
                planes = int(round(width))
                blocks.append(PyramidBottleneck(in_ch, planes, stride if j == 0 else 1,
                                                probs[i * n + j], norm_cfg))
                in_ch = planes * PyramidBottleneck.expansion
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            widths.append(in_ch)
        self.bn_final = build_norm_layer(norm_cfg, in_ch)[1]
        self.relu = nn.ReLU(inplace=True)
        self.set_stages('stem', ('layer1', 'layer2', 'layer3'), widths)

    def after_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """BN-ReLU after the last stage."""
        return self.relu(self.bn_final(x)) if i == 2 else x


class ShakeShortcut(nn.Module):
    """Shake-Shake's projection: two 1x1 convs of half the width, the second on the
    input shifted by one pixel, concatenated, then BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: dict = _BN) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(in_channels, out_channels - out_channels // 2, 1, bias=False)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x)
        h1 = self.conv1(F.avg_pool2d(h, 1, self.stride))
        h2 = self.conv2(F.avg_pool2d(F.pad(h, (-1, 1, -1, 1)), 1, self.stride))
        return self.bn(torch.cat((h1, h2), 1))


class ShakeBlock(nn.Module):
    """Two ReLU-conv3x3-BN-ReLU-conv3x3-BN branches mixed by Shake-Shake."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: dict = _BN) -> None:
        super().__init__()
        self.shortcut = (None if in_channels == out_channels and stride == 1 else
                         ShakeShortcut(in_channels, out_channels, stride, norm_cfg))
        self.branch1, self.branch2 = (nn.Sequential(
            nn.ReLU(), nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            build_norm_layer(norm_cfg, out_channels)[1], nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            build_norm_layer(norm_cfg, out_channels)[1]) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = shake_shake(self.branch1(x), self.branch2(x), self.training)
        return h + (x if self.shortcut is None else self.shortcut(x))


@register_model
class ShakeResNet(StagedMember):
    """Shake-Shake ResNet for CIFAR: stem conv3x3 (16) + BN, three stages of
    ``(depth - 2) / 6`` two-branch blocks of widths w, 2w, 4w, then ReLU.

    Args:
        depth: 6n + 2 (26 for Shake-Shake-26).
        base_width: w (96 for 2x96d).
        out_indices, frozen_stages, norm_eval, norm_cfg, init_cfg: as mmpretrain's
            backbones.
    """

    def __init__(self, depth: int = 26, base_width: int = 96, in_channels: int = 3,
                 out_indices: Sequence[int] = (2, ), frozen_stages: int = -1,
                 norm_eval: bool = False, norm_cfg: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(out_indices, frozen_stages, norm_eval, init_cfg)
        norm_cfg = norm_cfg or _BN
        if (depth - 2) % 6 != 0:
            raise ConfigError(f'Shake-Shake depth must be 6n + 2 (26, 32, ...), found {depth}')
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1),
                                  build_norm_layer(norm_cfg, 16)[1])
        widths = (base_width, 2 * base_width, 4 * base_width)
        in_ch = 16
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2))):
            self.add_module(f'layer{i + 1}', nn.Sequential(*[
                ShakeBlock(in_ch if j == 0 else width, width, stride if j == 0 else 1,
                           norm_cfg) for j in range(n)]))
            in_ch = width
        self.set_stages('stem', ('layer1', 'layer2', 'layer3'), widths)

    def after_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """ReLU after the last stage."""
        return F.relu(x) if i == 2 else x


@register_model
class SEResNetCIFAR(SEResNet, ResNet_CIFAR):
    """SE-ResNet-110 / -164 for CIFAR: 3x3 stem of w channels, three stages of
    (12, 12, 12) or (18, 18, 18) SE bottlenecks of widths w*(1, 2, 4)*4, SE
    reduction 4, average-pool downsampling.
    """

    arch_settings = {110: (SEBottleneck, (12, 12, 12)), 164: (SEBottleneck, (18, 18, 18))}

    def __init__(self, depth: int, se_ratio: int = 4, num_stages: int = 3,
                 strides: Sequence[int] = (1, 2, 2), dilations: Sequence[int] = (1, 1, 1),
                 out_indices: Sequence[int] = (2, ), stem_channels: int = 16,
                 base_channels: int = 16, avg_down: bool = True, **kwargs) -> None:
        super().__init__(depth, se_ratio=se_ratio, num_stages=num_stages, strides=strides,
                         dilations=dilations, out_indices=out_indices,
                         stem_channels=stem_channels, base_channels=base_channels,
                         avg_down=avg_down, **kwargs)


def _shake_output(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return module.shake_drop(output)


@register_model
class DenseNetCIFAR(DenseNet):
    """DenseNet-BC for CIFAR: mmpretrain's DenseNet behind a 3x3 stem of
    ``2 * growth_rate`` channels, without the ImageNet stride-4 stem.

    DenseNet-BC-190 (k=40) has three dense blocks of 31 bottleneck layers.

    Args:
        growth_rate: k.
        depths: layers per dense block.
        init_channels: stem channels (``2 * growth_rate`` when None).
        shakedrop_prob: if > 0, ShakeDrop on every layer's new features, its
            probability growing linearly with depth to this value.
        out_indices: dense blocks whose outputs (after their transition) are returned.
        **kwargs: other arguments of mmpretrain's ``DenseNet`` (``bn_size``,
            ``compression_factor``, ``drop_rate``, ``memory_efficient``, ...).
    """

    def __init__(self, growth_rate: int = 40, depths: Sequence[int] = (31, 31, 31),
                 init_channels: Optional[int] = None, shakedrop_prob: float = 0.0,
                 in_channels: int = 3, out_indices: Sequence[int] = (2, ),
                 compression_factor: float = 0.5, **kwargs) -> None:
        init_channels = init_channels or 2 * growth_rate
        arch = dict(growth_rate=growth_rate, depths=list(depths), init_channels=init_channels)
        if not set(out_indices) <= set(range(len(depths))):
            raise ConfigError(f'out_indices must be within {tuple(range(len(depths)))}, '
                              f'found {tuple(out_indices)}')
        super().__init__(arch=arch, in_channels=in_channels, out_indices=list(out_indices),
                         compression_factor=compression_factor, **kwargs)
        self.stem = nn.Conv2d(in_channels, init_channels, 3, 1, 1, bias=False)
        layers = [layer for stage in self.stages for layer in stage.block]
        if shakedrop_prob > 0:
            for layer, p in zip(layers, linear_shakedrop_probs(shakedrop_prob, len(layers))):
                layer.shake_drop = ShakeDrop(p)
                layer.register_forward_hook(_shake_output)
        #: Output channels of every dense block (after its transition; the last
        #: transition is only a norm and an activation).
        self.out_channels = tuple(t.conv.out_channels if hasattr(t, 'conv') else t[0].num_features
                                  for t in self.transitions)
