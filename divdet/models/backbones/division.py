"""The width rules of Divide and Co-training: the one place that holds them.

A network divided into S members keeps its depth; each member's widths shrink by
about sqrt(S) so that parameters and FLOPs drop by about S per member
(Zhao et al., "Towards Better Accuracy-efficiency Trade-offs: Divide and
Co-training", TIP 2022, Sec. III-A, Table I). The reference rounds by hand; the
tables below are its numbers (the paper's Table I and its released code).

Every divided module (backbones, necks, heads) asks this module for its member
widths. Adding a family means adding rows here, not copying a backbone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from divdet.utils.errors import ConfigError

# ResNet family on ImageNet (deep stem w, w, 2w; stages w * (1, 2, 4, 8) * 4).
RESNET_IMAGENET_WIDTH: Mapping[int, int] = {1: 64, 2: 44, 4: 32, 8: 24}
# ResNet family on CIFAR (stem w; stages w * (1, 2, 4) * expansion).
RESNET_CIFAR_WIDTH: Mapping[int, int] = {1: 16, 2: 12, 4: 8, 8: 6, 16: 4}
# Wide-ResNet-50-k on ImageNet: k per S. WRN-50-2 with S=2 gives two plain
# ResNet-50-D members; WRN-50-3 with S=2 gives two WRN-50-2 members.
WRN_IMAGENET_FACTOR: Mapping[int, Mapping[int, int]] = {2: {1: 2, 2: 1}, 3: {1: 3, 2: 2}}
# ResNeXt: only the cardinality is divided (groups / S).
RESNEXT_SPLITS: tuple[int, ...] = (1, 2, 4, 8)
# Wide-ResNet on CIFAR and ResNeXt on CIFAR.
WRN_CIFAR_SPLITS: tuple[int, ...] = (1, 2, 4, 8, 16)
# SE-ResNet-110/164 on CIFAR: stem and base width per S.
SE_RESNET_CIFAR_WIDTH: Mapping[int, int] = {1: 16, 2: 12, 4: 8}
# Shake-Shake-26 2x96d on CIFAR: base width per S.
SHAKE_SHAKE_WIDTH: Mapping[int, int] = {1: 96, 2: 64, 4: 48, 8: 32, 16: 24}
# PyramidNet and DenseNet-BC: widths shrink by sqrt(S) through a formula.
PYRAMIDNET_SPLITS: tuple[int, ...] = (1, 2, 4, 8)
DENSENET_SPLITS: tuple[int, ...] = (1, 2, 4)
# EfficientNet B0 stem, stage and head channels and their rounding divisor per S;
# B1-B7 scale them by their width multiplier.
EFFICIENTNET_WIDTHS: Mapping[int, Mapping] = {
    1: dict(stem_channels=32, channels=(16, 24, 40, 80, 112, 192, 320), head_channels=1280,
            divisor=8),
    2: dict(stem_channels=24, channels=(12, 16, 24, 56, 80, 136, 224), head_channels=920,
            divisor=4),
    4: dict(stem_channels=16, channels=(12, 16, 20, 40, 56, 96, 160), head_channels=640,
            divisor=4),
}


def wrn_cifar_factor(k: int, num_members: int) -> int:
    """Width factor of a WRN-d-k member: ``int(k / sqrt(S) + 0.4)``.

    WRN-28-10: 10 -> 7 (S=2) -> 5 (S=4), i.e. 160/320/640 -> 112/224/448 -> 80/160/320.
    """
    return int(k / math.sqrt(num_members) + 0.4)


def densenet_growth_rate(k: int, num_members: int) -> int:
    """Growth rate of a DenseNet-BC member: ``int(k / sqrt(S) * 2) // 2``
    (k=40: 40 -> 28 at S=2 -> 20 at S=4)."""
    return int(k / math.sqrt(num_members) * 2) // 2


def scale_dropout(p: float, num_members: int, mode: str = 'linear') -> float:
    """Dropout (or drop-path) probability of one member.

    Args:
        p: probability of the undivided network.
        num_members: split factor S.
        mode: ``'linear'`` (p / S), ``'sqrt'`` (p / sqrt(S)) or ``'none'``.
    """
    if mode == 'linear':
        return p / num_members
    if mode == 'sqrt':
        return p / math.sqrt(num_members)
    if mode == 'none':
        return p
    raise ConfigError(f"dropout scaling must be 'linear', 'sqrt' or 'none', found {mode!r}")


def weight_decay_scale(num_members: int) -> float:
    """Optional weight-decay scaling ``exp(1/S - 1)``: 0.607 at S=2, 0.472 at S=4."""
    return math.exp(1.0 / num_members - 1.0)


def divide_channels(channels: int, num_members: int, power: float = 1.0) -> int:
    """Channels of one member: ``round(channels / S**power)``.

    ``power=0.5`` divides parameters of a conv between two divided layers by
    about S; ``power=1`` divides those of a layer whose other side is fixed
    (an SSD prediction conv with a fixed number of outputs) by S.
    """
    return max(1, int(round(channels / num_members**power)))


def divide_width(channels: int, num_members: int, power: float = 0.5, divisor: int = 8) -> int:
    """A member's width of a divided neck or head layer: ``channels / S**power``
    rounded to a multiple of ``divisor`` (GroupNorm groups, or 8); ``channels`` at S=1.

    The FPN and the stacked convs of RetinaNet, FCOS and ATSS heads read and write
    divided widths, so ``power=0.5`` (the backbones' rule) divides their
    parameters by about S.
    """
    if num_members == 1:
        return int(channels)
    return max(divisor, int(round(channels / num_members**power / divisor)) * divisor)


@dataclass(frozen=True)
class Arch:
    """One divisible architecture: the member class and its widths per S.

    Attributes:
        member: key of the member backbone class in
            :data:`divdet.models.backbones.divided_resnet.MEMBER_CLASSES`.
        fixed: constructor arguments every member gets, whatever S.
        widths: S -> the constructor arguments that S changes.
        dropout_keys: arguments holding dropout probabilities (dropout, drop-path,
            ShakeDrop), scaled with S.
        dropout_scaling: how the family's recipe scales them: ``'linear'`` (p / S)
            or ``'sqrt'`` (p / sqrt(S)).
    """

    member: str
    fixed: Mapping = field(default_factory=dict)
    widths: Mapping[int, Mapping] = field(default_factory=dict)
    dropout_keys: tuple[str, ...] = ('drop_path_rate', )
    dropout_scaling: str = 'linear'

    @property
    def supported(self) -> tuple[int, ...]:
        """The split factors this architecture has a rule for."""
        return tuple(sorted(self.widths))


def _resnet_d(depth: int) -> Arch:
    return Arch('DeepResNetV1d' if depth > 152 else 'ResNetV1d', dict(depth=depth),
                {s: dict(stem_channels=2 * w, base_channels=w)
                 for s, w in RESNET_IMAGENET_WIDTH.items()})


def _resnet(depth: int) -> Arch:
    return Arch('ResNet', dict(depth=depth),
                {s: dict(stem_channels=w, base_channels=w)
                 for s, w in RESNET_IMAGENET_WIDTH.items()})


def _se_resnet_d(depth: int) -> Arch:
    return Arch('SEResNet', dict(depth=depth, deep_stem=True, avg_down=True),
                {s: dict(stem_channels=2 * w, base_channels=w)
                 for s, w in RESNET_IMAGENET_WIDTH.items()})


def _wide_resnet_d(k: int, depth: int = 50) -> Arch:
    # the ResNet-D deep stem of the family (w, w, 2w with w = 64): WRN-50-2 at S=2 is two
    # plain ResNet-50-D members, as the reference says
    return Arch('WideResNetV1d', dict(depth=depth, stem_channels=128),
                {s: dict(width_factor=f) for s, f in WRN_IMAGENET_FACTOR[k].items()})


def _resnext_d(member: str, depth: int, groups: int, width: int) -> Arch:
    return Arch(member,
                dict(depth=depth, width_per_group=width, deep_stem=True, avg_down=True,
                     stem_channels=128),
                {s: dict(groups=groups // s) for s in RESNEXT_SPLITS if groups % s == 0})


def _resnexst(depth: int, groups: int, width: int) -> Arch:
    """ResNeXSt: ResNeSt's split attention (radix 2) with ResNeXt cardinality, divided
    like ResNeXt (groups / S, width per group kept)."""
    return Arch('ResNeSt', dict(depth=depth, width_per_group=width, radix=2,
                                stem_channels=64 if depth == 50 else 128),
                {s: dict(groups=groups // s) for s in RESNEXT_SPLITS if groups % s == 0})


def _resnet_cifar(depth: int) -> Arch:
    return Arch('ResNetCIFAR', dict(depth=depth),
                {s: dict(stem_channels=w, base_channels=w) for s, w in RESNET_CIFAR_WIDTH.items()})


def _wrn_cifar(depth: int, k: int) -> Arch:
    return Arch('PreActWideResNet', dict(depth=depth),
                {s: dict(widen_factor=wrn_cifar_factor(k, s)) for s in WRN_CIFAR_SPLITS},
                dropout_keys=('drop_rate', ))


def _resnext_cifar(groups: int, width: int) -> Arch:
    return Arch('ResNeXtCIFAR', dict(depth=29, width_per_group=width),
                {s: dict(groups=groups // s) for s in RESNEXT_SPLITS if groups % s == 0})


def _se_resnet_cifar(depth: int) -> Arch:
    return Arch('SEResNetCIFAR', dict(depth=depth),
                {s: dict(stem_channels=w, base_channels=w)
                 for s, w in SE_RESNET_CIFAR_WIDTH.items()},
                dropout_scaling='sqrt')


def _senet154() -> Arch:
    return Arch('SENet154', dict(depth=154),
                {s: dict(groups=64 // s) for s in RESNEXT_SPLITS}, dropout_scaling='sqrt')


def _pyramidnet(depth: int, alpha: float) -> Arch:
    """Bottleneck PyramidNet + ShakeDrop: the added width ``alpha`` and the final
    ShakeDrop probability (0.5) both divided by sqrt(S)."""
    return Arch('PyramidNet', dict(depth=depth, shakedrop_prob=0.5),
                {s: dict(alpha=alpha / math.sqrt(s)) for s in PYRAMIDNET_SPLITS},
                dropout_keys=('shakedrop_prob', ), dropout_scaling='sqrt')


def _shake_shake(depth: int) -> Arch:
    return Arch('ShakeResNet', dict(depth=depth),
                {s: dict(base_width=w) for s, w in SHAKE_SHAKE_WIDTH.items()}, dropout_keys=())


def _densenet_bc(k: int, depths: tuple[int, ...]) -> Arch:
    """DenseNet-BC: growth rate per S, stem of twice the growth rate, optional ShakeDrop."""
    return Arch('DenseNetCIFAR', dict(depths=depths),
                {s: dict(growth_rate=densenet_growth_rate(k, s)) for s in DENSENET_SPLITS},
                dropout_keys=('shakedrop_prob', 'drop_rate'), dropout_scaling='sqrt')


def _efficientnet(variant: str) -> Arch:
    return Arch('EfficientNetMember', dict(arch=variant), EFFICIENTNET_WIDTHS,
                dropout_scaling='sqrt')


#: Every divisible architecture, by the name a config gives as ``arch``.
ARCHS: Mapping[str, Arch] = {
    # ImageNet, ResNet-D form (deep stem, average-pool downsampling).
    'resnet18-d': _resnet_d(18),
    'resnet34-d': _resnet_d(34),
    'resnet50-d': _resnet_d(50),
    'resnet101-d': _resnet_d(101),
    'resnet152-d': _resnet_d(152),
    'resnet200-d': _resnet_d(200),
    # ImageNet, torchvision's ResNet-50 (7x7 stem, stride in the 3x3 conv): the
    # layout of torchvision's weights (tools/model_converters/torchvision2divdet.py).
    'resnet50': _resnet(50),
    'wide-resnet50-2': _wide_resnet_d(2),
    'wide-resnet50-3': _wide_resnet_d(3),
    'wide-resnet101-2': _wide_resnet_d(2, depth=101),
    'resnext50-32x4d': _resnext_d('ResNeXt', 50, 32, 4),
    'resnext101-32x4d': _resnext_d('ResNeXt', 101, 32, 4),
    'resnext101-64x4d': _resnext_d('ResNeXt', 101, 64, 4),
    'seresnet50': _se_resnet_d(50),
    'seresnet101': _se_resnet_d(101),
    'seresnext50-32x4d': _resnext_d('SEResNeXt', 50, 32, 4),
    'seresnext101-32x4d': _resnext_d('SEResNeXt', 101, 32, 4),
    'resnexst50-4x16d': _resnexst(50, 4, 16),
    'resnexst50-8x16d': _resnexst(50, 8, 16),
    'resnexst50-4x32d': _resnexst(50, 4, 32),
    'resnexst101-8x32d': _resnexst(101, 8, 32),
    # CIFAR.
    'resnet110-cifar': _resnet_cifar(110),
    'resnet164-cifar': _resnet_cifar(164),
    'wrn16-8-cifar': _wrn_cifar(16, 8),
    'wrn16-12-cifar': _wrn_cifar(16, 12),
    'wrn28-10-cifar': _wrn_cifar(28, 10),
    'wrn40-10-cifar': _wrn_cifar(40, 10),
    'wrn52-8-cifar': _wrn_cifar(52, 8),
    'resnext29-8x64d-cifar': _resnext_cifar(8, 64),
    'resnext29-16x64d-cifar': _resnext_cifar(16, 64),
    'seresnet110-cifar': _se_resnet_cifar(110),
    'seresnet164-cifar': _se_resnet_cifar(164),
    # PyramidNet-164 uses alpha 270 and -272 alpha 200 (Han et al., CVPR 2017).
    'pyramidnet164-cifar': _pyramidnet(164, 270),
    'pyramidnet272-cifar': _pyramidnet(272, 200),
    'shake-shake26-2x96d-cifar': _shake_shake(26),
    'densenet-bc190-k40-cifar': _densenet_bc(40, (31, 31, 31)),
    # ImageNet, other families.
    'senet154': _senet154(),
    **{f'efficientnet-b{i}': _efficientnet(f'b{i}') for i in range(8)},
}


class UnknownArchError(ConfigError, KeyError):
    """An ``arch`` name that is not in :data:`ARCHS`."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


#: The width arguments a width multiplier scales (channel counts and growth rates);
#: depths, groups and factors such as WRN's k stay.
WIDENED_KEYS = ('stem_channels', 'base_channels', 'channels', 'head_channels', 'growth_rate')


def widen_widths(widths: Mapping, factor: float, arch: str = 'this arch') -> dict:
    """A member's width arguments times ``factor``, on top of the division rule.

    ``widen`` draws the accuracy-against-width curve of one network (the paper's
    Figure 1: wider S=1 networks against S > 1 at the base width). Channel counts
    are rounded to the nearest integer (to a multiple of the family's
    ``divisor`` where it has one, e.g. EfficientNet).

    Raises:
        ConfigError: a factor that is not a positive number, or an architecture
            whose widths are not channel counts (e.g. WRN's factor k).
    """
    from divdet.utils.ranges import check_range
    check_range('widen', factor, '(0, inf)')
    if factor == 1:
        return dict(widths)
    if not any(k in WIDENED_KEYS for k in widths):
        raise ConfigError(f'widen={factor}: {arch} sets its widths by {sorted(widths)}, not '
                          'channel counts; choose a wider arch instead (e.g. a larger k)')
    divisor = int(widths.get('divisor', 1))

    def scale(v):
        return max(divisor, int(round(v * factor / divisor)) * divisor)
    return {k: (tuple(scale(x) for x in v) if isinstance(v, (tuple, list)) else scale(v))
            if k in WIDENED_KEYS else v for k, v in widths.items()}


def get_arch(name: str, num_members: int) -> Arch:
    """Look up an architecture and check that it can be divided into S members.

    Raises:
        UnknownArchError: unknown architecture (the message lists the known ones).
        ConfigError: no rule for this S (the message lists the supported ones).
    """
    if name not in ARCHS:
        raise UnknownArchError(f'unknown arch {name!r}; expected one of {sorted(ARCHS)}')
    arch = ARCHS[name]
    if num_members not in arch.widths:
        raise ConfigError(f'arch {name!r} has no division rule for num_members={num_members}; '
                         f'supported: {list(arch.supported)}')
    return arch
