"""Checks every divided model makes: finite losses and matching checkpoints.

:class:`DividedModelChecks` is mixed into
:class:`~divdet.models.DividedSingleStageDetector` and
:class:`~divdet.models.DividedImageClassifier` in front of the mmdet/mmpretrain
base class.
"""
from __future__ import annotations

import re

import torch
from mmengine.logging import MessageHub

from divdet.utils.errors import CheckpointMismatchError, NonFiniteLossError

#: A backbone tensor of member ``i``: ``backbone.members.<i>.<name>``.
MEMBER_KEY = re.compile(r'^backbone\.members\.(\d+)\.')


def _first(items: list, n: int = 3) -> str:
    more = f' (and {len(items) - n} more)' if len(items) > n else ''
    return '; '.join(str(i) for i in items[:n]) + more


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


def check_member_state_dict(model: torch.nn.Module, state_dict: dict, prefix: str) -> None:
    """Refuse a checkpoint whose backbone has a different S or architecture.

    A checkpoint with another head (e.g. another number of classes, as in
    fine-tuning) is left to mmengine, which loads what fits and logs the rest.
    A backbone that does not fit would otherwise be skipped with a warning,
    and the model would train or test with random weights.

    Raises:
        CheckpointMismatchError: a different number of members, an undivided
            backbone, or backbone tensors missing, unexpected or of another
            shape.
    """
    keys = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    backbone = {k: v for k, v in keys.items() if k.startswith('backbone.')}
    if not backbone:
        return
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
    own = {k: v for k, v in model.state_dict().items() if k.startswith('backbone.')}
    problems = [f'{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}'
                for k, v in backbone.items() if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in backbone]
    unexpected = [k for k in backbone if k not in own]
    if problems or missing or unexpected:
        arch = getattr(model.backbone, 'arch', '?')
        details = []
        if problems:
            details.append(f'{len(problems)} tensors differ in shape: {_first(problems)}')
        if missing:
            details.append(f'{len(missing)} missing: {_first(missing)}')
        if unexpected:
            details.append(f'{len(unexpected)} unexpected: {_first(unexpected)}')
        raise CheckpointMismatchError(
            f'the checkpoint\'s backbone does not match the config\'s (arch={arch!r}, '
            f'num_members={model.num_members}): ' + '; '.join(details))


class DividedModelChecks:
    """Mixin: finite-loss check in ``parse_losses``, checkpoint check on load."""

    def parse_losses(self, losses: dict):
        loss, log_vars = super().parse_losses(losses)
        check_finite_loss(loss, log_vars)
        return loss, log_vars

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        check_member_state_dict(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
