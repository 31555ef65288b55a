"""Checks every divided model makes: finite losses and matching checkpoints.

:class:`DividedModelChecks` is mixed into
:class:`~divdet.models.DividedSingleStageDetector` and
:class:`~divdet.models.DividedImageClassifier` in front of the mmdet/mmpretrain
base class.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import torch
from mmengine.logging import MessageHub

from divdet.utils.errors import CheckpointMismatchError, NonFiniteLossError, first_items

#: A backbone tensor of member ``i``: ``backbone.members.<i>.<name>``.
MEMBER_KEY = re.compile(r'^backbone\.members\.(\d+)\.')


def check_finite_loss(loss: torch.Tensor, log_vars: dict) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` is NaN or infinite.

    Called before the backward pass, so the weights are not updated with it
    and no checkpoint of them is written. One host sync per step, which
    mmengine's logging makes anyway.
    """
    if bool(torch.isfinite(loss)):
        return
    bad = [f'{k}={float(v):g}' for k, v in log_vars.items()
           if k != 'loss' and torch.is_tensor(v) and not bool(torch.isfinite(v).all())]
    step = MessageHub.get_current_instance().get_info('iter')
    where = f' at iteration {step + 1}' if step is not None else ''
    raise NonFiniteLossError(
        f'the training loss is {float(loss):g}{where} ({", ".join(bad) or "the sum"}); the update '
        'was not applied and no checkpoint was written. Lower the learning rate, add '
        'optim_wrapper.clip_grad=dict(max_norm=...), or check the data for broken boxes')


def check_member_state_dict(model: torch.nn.Module, state_dict: dict, prefix: str,
                            partial: bool = False) -> None:
    """Refuse a checkpoint that would leave part of a divided model untrained.

    mmengine loads what fits and only warns about the rest, so a checkpoint of
    another S, arch, neck or head would be trained or tested with random
    weights in its place, and a test run would report their AP with exit
    status 0. The backbone must match exactly (members, arch, every tensor).
    Outside the backbone every tensor must be there with its shape, and no
    other tensor may be, unless ``partial`` (fine-tuning from a checkpoint with
    another neck or head, ``tools/train.py --partial-load``): then what does not
    fit is left to mmengine (initialised, listed in its warning).

    Raises:
        CheckpointMismatchError: a different number of members, an undivided
            backbone, backbone tensors missing, unexpected or of another
            shape; without ``partial``, any other tensor missing, unexpected
            or of another shape.
    """
    keys = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    own_all = model.state_dict()
    backbone = {k: v for k, v in keys.items() if k.startswith('backbone.')}
    if backbone:
        _check_backbone(model, backbone, own_all)
    if partial:
        return
    others = {k: v for k, v in keys.items() if not k.startswith('backbone.')}
    own_others = {k: v for k, v in own_all.items() if not k.startswith('backbone.')}
    parts = describe_mismatch(others, own_others, required=own_others if keys else ())
    if parts:
        raise CheckpointMismatchError(
            "the checkpoint's tensors do not fit the config's model outside the backbone "
            f"({'; '.join(parts)}); they would be left randomly initialised. Check the "
            "config's neck and head (e.g. num_classes, share_head, norm_cfg) against the "
            "checkpoint's; to fine-tune from it with another head, train with --partial-load")


def _check_backbone(model: torch.nn.Module, backbone: dict, own_all: Mapping) -> None:
    members = sorted({int(m.group(1)) for k in backbone if (m := MEMBER_KEY.match(k))})
    if not members:
        raise CheckpointMismatchError(
            f'the checkpoint\'s backbone is not divided (keys like {next(iter(backbone))!r}, '
            "none like 'backbone.members.0.'); convert it with "
            'tools/model_converters/torchvision2divdet.py or reference2divdet.py')
    if len(members) != model.num_members:
        raise CheckpointMismatchError(
            f'the checkpoint has {len(members)} members (backbone.members.{members[0]}..'
            f'{members[-1]}), the config builds num_members={model.num_members}')
    own = {k: v for k, v in own_all.items() if k.startswith('backbone.')}
    details = describe_mismatch(backbone, own, required=own)
    if details:
        arch = getattr(model.backbone, 'arch', '?')
        raise CheckpointMismatchError(
            f'the checkpoint\'s backbone does not match the config\'s (arch={arch!r}, '
            f'num_members={model.num_members}): ' + '; '.join(details))


def describe_mismatch(given: Mapping, own: Mapping, required: Iterable[str]) -> list[str]:
    """What keeps the ``given`` tensors from loading into a model with ``own``.

    Args:
        given: name -> tensor to load.
        own: the model's name -> tensor.
        required: names that ``given`` must hold.

    Returns:
        Message parts (tensors of another shape, missing, unexpected); empty
        if everything fits.
    """
    shapes = [f'{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}'
              for k, v in given.items() if k in own and v.shape != own[k].shape]
    missing = [k for k in required if k not in given]
    unexpected = [k for k in given if k not in own]
    parts = []
    for what, items in (('differ in shape', shapes), ('missing', missing),
                        ('unexpected', unexpected)):
        if items:
            parts.append(f'{len(items)} {what}: {first_items(items, sep="; ")}')
    return parts


class DividedModelChecks:
    """Mixin: finite-loss check in ``parse_losses``, checkpoint check on load."""

    def parse_losses(self, losses: dict):
        loss, log_vars = super().parse_losses(losses)
        check_finite_loss(loss, log_vars)
        return loss, log_vars

    #: set by ``tools/train.py --partial-load``: a ``load_from`` checkpoint may lack or
    #: add tensors outside the backbone (fine-tuning with another neck or head)
    partial_checkpoint = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_member_state_dict(self, state_dict, prefix, partial=self.partial_checkpoint)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
