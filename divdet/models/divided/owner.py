"""The owner of the divided parts: what a divided detector and a divided classifier share.

:class:`DividedOwner` is mixed into a divided model, before its mmdet or mmpretrain
base class. It checks S once, builds every part with S
(:func:`~divdet.models.divided.part.with_members`, so a part that gives another S
is an error), holds the model's :class:`~divdet.models.divided.runtime.MemberRuntime`
and attaches the parts to it, keeps weights and activations channels-last where
that measured faster (``channels_last``), and brings the model checks of
:class:`~divdet.models.divided.checks.DividedModelChecks` (finite losses, the
checkpoint's S and backbone).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from divdet.models.divided.checks import DividedModelChecks
from divdet.models.divided.part import with_members
from divdet.models.divided.runtime import MemberRuntime, channels_last_for
from divdet.utils.errors import ConfigError


def check_num_members(num_members) -> int:
    """S as given, or a one-line :class:`ConfigError` for anything but a positive int."""
    if isinstance(num_members, bool) or not isinstance(num_members, int) or num_members < 1:
        raise ConfigError(f'num_members must be a positive integer, found {num_members!r}')
    return num_members


class DividedOwner(DividedModelChecks):
    """A divided model's share of the work (module doc).

    A subclass calls :meth:`build_runtime` and :meth:`build_part` while it builds
    its parts, then :meth:`own_parts` once ``nn.Module`` is initialised.
    """

    #: how the model is named in messages (``'detector'``, ``'classifier'``)
    owner_name = 'model'

    @staticmethod
    def build_runtime(num_members: int, member_execution: str = 'auto',
                      member_devices: Optional[list] = None,
                      compile_members=False) -> MemberRuntime:
        """The members' runtime, S checked first."""
        check_num_members(num_members)
        return MemberRuntime(member_execution, num_members, member_devices, compile_members)

    @classmethod
    def build_part(cls, registry, cfg: dict, num_members: int, where: str, **extra):
        """Part ``where`` (``'backbone'``, ``'neck'``, ...) built with S and ``extra``."""
        return registry.build(dict(with_members(cfg, num_members, where, cls.owner_name),
                                   **extra))

    def own_parts(self, num_members: int, runtime: MemberRuntime, *parts,
                  channels_last=False) -> None:
        """Keep S and the runtime, attach the divided ``parts`` (None skipped) to it and
        lay the weights out for ``channels_last`` (True, False or ``'auto'``)."""
        self.num_members = num_members
        self.runtime = runtime
        runtime.attach(*parts)
        channels_last_for(channels_last, torch.device('cpu'))  # checks the value
        self.channels_last = channels_last
        self._in_channels_last = False
        self._relayout()

    # ---- channels-last -----------------------------------------------------------------

    def _relayout(self) -> None:
        """Weights channels-last or not, as ``channels_last`` asks for their device."""
        param = next(self.parameters(), None)
        want = channels_last_for(self.channels_last,
                                 param.device if param is not None else torch.device('cpu'))
        if want != self._in_channels_last:
            self._in_channels_last = want
            super()._apply(lambda t: t.contiguous(
                memory_format=torch.channels_last if want else torch.contiguous_format)
                if t.dim() == 4 else t)

    def _apply(self, fn, recurse: bool = True):
        """``to()``, ``cuda()`` ...; then the layout for the new device."""
        module = super()._apply(fn, recurse)
        if hasattr(self, '_in_channels_last'):
            self._relayout()
        return module

    def _layout(self, inputs: Tensor) -> Tensor:
        """The inputs in channels-last memory format if the weights are."""
        if not getattr(self, '_in_channels_last', False):
            return inputs
        if inputs.dim() == 5:  # (N, S, C, H, W): each member's view channels-last
            return inputs.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        return inputs.contiguous(memory_format=torch.channels_last)
