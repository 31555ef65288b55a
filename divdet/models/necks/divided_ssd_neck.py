"""DividedSSDNeck: one mmdet ``SSDNeck`` per member, extra levels divided by S."""
from __future__ import annotations

from typing import Sequence

from mmdet.registry import MODELS
from mmengine.model import ModuleList
from mmengine.registry import DefaultScope
from torch import Tensor

from divdet.models.backbones.division import divide_channels
from divdet.models.divided.part import DividedPart
from divdet.registry import register_model


@register_model
class DividedSSDNeck(DividedPart):
    """The SSD extra layers, one stock ``SSDNeck`` per member.

    ``out_channels`` are the *undivided* widths (those of the S=1 network, as
    in mmdet's SSD configs). The pass-through levels take the member's input
    channels; every extra level's width is divided by S (``width_power=1``):
    the SSD prediction convs that read these maps have a fixed number of
    outputs, so their parameters scale linearly with these widths, and
    dividing by S keeps the S-member detector at about the undivided size.

    Input/output contract::

        forward(x: tuple of S tuples of (N, C_l, H_l, W_l))
            -> tuple of S tuples of (N, member_out_channels[l], H_l, W_l)

    Args:
        num_members: the split factor S.
        in_channels: channels of one member's input maps (the divided
            backbone's ``member_out_channels``).
        out_channels: undivided output widths; the first ``len(in_channels)``
            entries are replaced by ``in_channels``.
        width_power: extra widths are divided by ``S ** width_power``.
        **kwargs: the other ``SSDNeck`` arguments (``level_strides``,
            ``level_paddings``, ``l2_norm_scale``, ...).
    """

    def __init__(self, num_members: int, in_channels: Sequence[int],
                 out_channels: Sequence[int], width_power: float = 1.0,
                 init_cfg=None, **kwargs) -> None:
        super().__init__(num_members, init_cfg)
        n_in = len(in_channels)
        extra = [divide_channels(c, num_members, width_power) for c in out_channels[n_in:]]
        # SSDNeck's 1x1 reduction conv halves the width: keep it even.
        extra = [c + c % 2 for c in extra]
        self.member_out_channels = tuple(in_channels) + tuple(extra)
        cfg = dict(type='SSDNeck', in_channels=tuple(in_channels),
                   out_channels=self.member_out_channels, **kwargs)
        with DefaultScope.overwrite_default_scope('mmdet'):
            self.members = ModuleList(MODELS.build(cfg) for _ in range(num_members))

    def forward_member(self, i: int, feats: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Member ``i``'s neck on member ``i``'s features."""
        return self.members[i](feats)
