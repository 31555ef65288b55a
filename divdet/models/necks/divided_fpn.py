"""DividedFPN: one mmdet ``FPN`` per member, its width divided by the backbone's rule."""
from __future__ import annotations

from typing import Sequence

from mmdet.registry import MODELS
from mmengine.model import ModuleList
from mmengine.registry import DefaultScope
from torch import Tensor

from divdet.models.backbones.division import divide_width
from divdet.models.divided.part import DividedPart
from divdet.registry import register_model


@register_model
class DividedFPN(DividedPart):
    """mmdet's ``FPN`` per member, for RetinaNet, FCOS, ATSS and other FPN detectors.

    ``out_channels`` is the *undivided* width (the S=1 network's, 256 in mmdet's
    configs); each member's is ``out_channels / sqrt(S)`` (``width_power=0.5``, the
    rule of the backbones' widths: an FPN conv reads and writes divided widths, so
    its parameters divide by about S), rounded to a multiple of ``divisor``.

    Input/output contract::

        forward(x: tuple of S tuples of (N, C_l, H_l, W_l))
            -> tuple of S tuples of num_outs maps (N, member_out_channels[l], H_l, W_l)

    Args:
        num_members: the split factor S.
        in_channels: channels of one member's input maps (the divided backbone's
            ``member_out_channels``, all of them or those from ``start_level``).
        out_channels: the undivided output width.
        num_outs: output levels, as ``FPN``.
        width_power: the width is divided by ``S ** width_power``.
        divisor: member widths are rounded to a multiple of it (8; use the heads'
            GroupNorm groups, 32, for FCOS and ATSS).
        **kwargs: the other ``FPN`` arguments (``start_level``, ``add_extra_convs``,
            ``relu_before_extra_convs``, ...).
    """

    def __init__(self, num_members: int, in_channels: Sequence[int], out_channels: int,
                 num_outs: int, width_power: float = 0.5, divisor: int = 8, init_cfg=None,
                 **kwargs) -> None:
        super().__init__(num_members, init_cfg)
        width = divide_width(out_channels, num_members, width_power, divisor)
        self.member_out_channels = (width, ) * num_outs
        cfg = dict(type='FPN', in_channels=list(in_channels), out_channels=width,
                   num_outs=num_outs, **kwargs)
        with DefaultScope.overwrite_default_scope('mmdet'):
            self.members = ModuleList(MODELS.build(cfg) for _ in range(num_members))

    def forward_member(self, i: int, feats: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Member ``i``'s FPN on member ``i``'s features."""
        return self.members[i](feats)
