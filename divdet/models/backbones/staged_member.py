"""The base of member networks that mmpretrain does not ship: a stem, then stages.

It gives them mmpretrain's backbone options (``out_indices``, ``frozen_stages``,
``norm_eval``) and its output contract: a tuple with one feature map per out index.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from divdet.utils.errors import ConfigError

#: mmpretrain's default init for CIFAR networks: Kaiming convs, unit BN scales.
KAIMING_INIT = [dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu'),
                dict(type='Constant', val=1, layer=['_BatchNorm'])]


class StagedMember(BaseModule):
    """A stem followed by stages, returning the outputs of ``out_indices``.

    Subclasses build their modules, then call :meth:`set_stages` with the stem
    and the stages (their attributes keep their own names, so checkpoints read
    as the original network's), and may override :meth:`after_stage`.

    Args:
        out_indices: stages whose outputs are returned.
        frozen_stages: stages (0 = stem) whose parameters are frozen; -1 none.
        norm_eval: keep norm layers in eval mode during training.
        init_cfg: mmengine init config (Kaiming convs by default).
    """

    def __init__(self, out_indices: Sequence[int], frozen_stages: int = -1,
                 norm_eval: bool = False, init_cfg=None) -> None:
        super().__init__(KAIMING_INIT if init_cfg is None else init_cfg)
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._stem_name = ''
        self._stage_names: tuple[str, ...] = ()

    def set_stages(self, stem: str, stages: Sequence[str], out_channels: Sequence[int]) -> None:
        """Name the stem and the stage attributes and give each stage's output channels."""
        if not set(self.out_indices) <= set(range(len(stages))):
            raise ConfigError(f'out_indices must be within {tuple(range(len(stages)))}, '
                              f'found {self.out_indices}')
        self._stem_name, self._stage_names = stem, tuple(stages)
        self.out_channels = tuple(out_channels)
        self._freeze_stages()

    def after_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """What runs after stage ``i`` (the final norm of a pre-activation network)."""
        return x

    def _modules_in_order(self) -> list[nn.Module]:
        return [getattr(self, n) for n in (self._stem_name, *self._stage_names)]

    def _freeze_stages(self) -> None:
        for m in self._modules_in_order()[:self.frozen_stages + 1]:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(N, 3, H, W) -> one feature map per out index."""
        x = getattr(self, self._stem_name)(x)
        outs = []
        for i, name in enumerate(self._stage_names):
            x = self.after_stage(i, getattr(self, name)(x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> StagedMember:
        """Set train mode, keeping frozen stages and (optionally) norms in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
