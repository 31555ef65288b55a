"""The divided-model framework: what every divided part and model is built from.

- :mod:`.part`: :class:`DividedPart` (S members of a backbone, neck or head; a
  subclass writes what one member does) and :func:`with_members` (S written once);
- :mod:`.owner`: :class:`DividedOwner`, the share of a divided detector or
  classifier (S checked, parts built with S and attached to the runtime,
  channels-last, model checks);
- :mod:`.runtime`: :class:`MemberRuntime`, the one place that decides how members
  run (sequential, threads, CUDA streams, devices, or measured: ``'auto'``);
- :mod:`.checks`: finite losses and checkpoints that fit the model.

The width rules live next to the backbones they describe
(:mod:`divdet.models.backbones.division`); the member protocol of divided dense
heads is :class:`divdet.models.dense_heads.DividedDenseHead`.
"""
from .checks import DividedModelChecks
from .owner import DividedOwner, check_num_members
from .part import DividedPart, with_members
from .runtime import EXECUTIONS, MemberRuntime

__all__ = ['DividedModelChecks', 'DividedOwner', 'DividedPart', 'EXECUTIONS', 'MemberRuntime',
           'check_num_members', 'with_members']
