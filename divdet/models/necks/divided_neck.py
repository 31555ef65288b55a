"""DividedNeck: one copy of any stock neck per member."""
from __future__ import annotations

from typing import Sequence

from mmengine.model import ModuleList
from mmengine.registry import MODELS as ROOT_MODELS
from torch import Tensor

from divdet.models.divided.part import DividedPart
from divdet.registry import register_model


@register_model
class DividedNeck(DividedPart):
    """Applies its own copy of a stock neck (e.g. mmpretrain's
    ``GlobalAveragePooling``) to each member's features.

    Input/output contract::

        forward(x: tuple of S tuples of tensors) -> tuple of S neck outputs

    Args:
        num_members: the split factor S.
        neck: config of the neck, built in the current default scope. Give
            member widths explicitly if the neck takes any.
    """

    def __init__(self, num_members: int, neck: dict, init_cfg=None) -> None:
        super().__init__(num_members, init_cfg)
        self.members = ModuleList(ROOT_MODELS.build(dict(neck)) for _ in range(num_members))

    def forward_member(self, i: int, feats: Sequence[Tensor]):
        """Member ``i``'s neck on member ``i``'s features."""
        return self.members[i](feats)
