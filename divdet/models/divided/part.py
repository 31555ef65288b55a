"""The divided part: S members of a backbone, neck or head, and S written once.

A subclass of :class:`DividedPart` builds ``self.members`` and writes what one
member does (``forward_member``); how the members run is the owning model's
:class:`~divdet.models.divided.runtime.MemberRuntime`. S is written once, on the
detector or classifier, and handed to every part by :func:`with_members`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from mmengine.model import BaseModule, ModuleList

from divdet.models.divided.runtime import STANDALONE, MemberRuntime
from divdet.utils.errors import ConfigError


def with_members(cfg: dict, num_members: int, where: str, owner: str, **overrides) -> dict:
    """A copy of a part's config with ``num_members`` (and ``overrides``) set.

    S is written once, on the detector or classifier; a part that gives its own,
    different ``num_members`` is a config error.

    Args:
        cfg: the part's config (backbone, neck or head).
        num_members: the owner's S.
        where: the part's key, for the error message (``'backbone'``).
        owner: ``'detector'`` or ``'classifier'``, for the error message.
        **overrides: other keys to set (e.g. ``fused``).

    Raises:
        ValueError: the part's ``num_members`` disagrees with the owner's.
    """
    given = cfg.get('num_members', num_members)
    if given != num_members:
        raise ConfigError(f'S is set once, on the {owner}: model.{where}.num_members={given} '
                         f'disagrees with model.num_members={num_members}')
    return dict(cfg, num_members=num_members, **overrides)


class DividedPart(BaseModule):
    """What every divided part shares: S members in ``self.members`` and how they run.

    A subclass builds ``self.members`` (an ``nn.ModuleList``) and writes
    :meth:`forward_member`; ``forward`` runs every member on its own input
    through the owning model's runtime (:class:`MemberRuntime`).
    """

    runtime: MemberRuntime = STANDALONE
    members: ModuleList

    def __init__(self, num_members: int, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.num_members = num_members

    def forward_member(self, i: int, x):
        """Member ``i``'s output from its input ``x``."""
        raise NotImplementedError

    def member_input(self, x, i: int):
        """Member ``i``'s share of the part's input (here ``x[i]``: one input per member)."""
        return x[i]

    def check_input(self, x) -> None:
        """Raise ValueError when ``x`` does not hold one input per member."""
        if len(x) != self.num_members:
            raise ValueError(f'{type(self).__name__}: expected features of '
                             f'{self.num_members} members, found {len(x)}')

    def forward(self, x) -> tuple:
        """Every member's output, in member order."""
        return tuple(self.run_members(x))

    def run_members(self, x, then: Optional[Callable[[int, Any], Any]] = None) -> list:
        """``[then(i, forward_member(i, member_input(x, i)))]`` through the runtime."""
        self.check_input(x)
        return self.runtime.run(
            range(self.num_members),
            lambda i, to_member: self.forward_member(i, to_member(self.member_input(x, i))), x,
            then=then)
