"""The co-training losses: generalised Jensen-Shannon divergence across members,
or distillation from the best member of the batch.

For member logits z_1..z_S with p_i = softmax(z_i) (Zhao et al., TIP 2022,
Eq. 3):

    L_cot = H(mean_i p_i) - mean_i H(p_i)

averaged over the samples (images in classification, anchors x images in
detection). It is 0 when all members agree and positive otherwise; gradients
flow into every member (no detached target side, no temperature). It is
computed in float32 whatever the input dtype, so it is safe under AMP.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from divdet.registry import register_model


def jensen_shannon_divergence(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Generalised JS divergence of S categorical distributions, per sample.

    Args:
        logits: S tensors of the same shape (..., num_classes).

    Returns:
        Tensor of shape (...,): H(mean p) - mean H(p), in float32.
    """
    log_p = torch.stack([F.log_softmax(z.float(), dim=-1) for z in logits])  # (S, ..., C)
    p = log_p.exp()
    mean_entropy = -(p * log_p).sum(-1).mean(0)
    p_mean = p.mean(0)
    # log of the mean probability, computed stably from the members' log-probs.
    log_p_mean = torch.logsumexp(log_p, dim=0) - torch.log(
        torch.tensor(float(len(logits)), device=log_p.device))
    entropy_of_mean = -(p_mean * log_p_mean).sum(-1)
    return entropy_of_mean - mean_entropy


@register_model
class CoTrainingLoss(nn.Module):
    """Weighted Jensen-Shannon co-training loss across members.

    The weight that is applied is the buffer ``weight``: it starts at
    ``loss_weight`` and :class:`~divdet.engine.hooks.CoTrainingHook` schedules
    it (linear warm-up per epoch). Being a buffer, it is saved in checkpoints.

    Args:
        loss_weight: the target weight lambda (0.5 in the reference).
    """

    def __init__(self, loss_weight: float = 0.5) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.register_buffer('weight', torch.tensor(float(loss_weight)))

    #: Whether :meth:`forward` needs the members' supervised losses.
    needs_member_losses = False

    def forward(self, logits: Sequence[torch.Tensor], member_losses=None) -> torch.Tensor:
        """Weighted mean JS divergence.

        Args:
            logits: one tensor per member, each (num_samples, num_classes) or
                any (..., num_classes) shape, all equal.
            member_losses: the members' supervised losses (not used here; see
                :class:`BestMemberDistillationLoss`).

        Returns:
            Scalar float32 loss. Zero for a single member.
        """
        if len(logits) < 2:
            return logits[0].new_zeros((), dtype=torch.float32)
        shapes = {tuple(z.shape) for z in logits}
        if len(shapes) != 1:
            raise ValueError(f'co-training needs equal logit shapes per member, found {shapes}')
        return self.weight * jensen_shannon_divergence(logits).mean()


def member_loss_totals(member_losses: Sequence[dict]) -> torch.Tensor:
    """(S,) each member's supervised loss of the batch, detached: the sum of its loss
    dict's values (tensors, or lists of per-image tensors as mmdet's SSD head gives)."""
    totals = []
    for losses in member_losses:
        parts = [p for v in losses.values() for p in (v if isinstance(v, (list, tuple)) else [v])]
        totals.append(torch.stack([p.detach().float().sum() for p in parts]).sum())
    return torch.stack(totals)


@register_model
class BestMemberDistillationLoss(CoTrainingLoss):
    """Co-training in which the best member of each batch teaches the others.

    After Cream (Peng et al., "Cream of the Crop: Distilling Prioritized Paths For
    One-Shot Neural Architecture Search", NeurIPS 2020): per batch the member with
    the lowest supervised loss is the teacher, and every other member is pulled
    to it by ``KL(p_teacher || p_member)``, the teacher's probabilities detached,
    so the distillation term sends no gradient into the teacher. The weight is
    the same ``weight`` buffer as :class:`CoTrainingLoss`'s, warmed up by
    :class:`~divdet.engine.hooks.CoTrainingHook`. Select it in a head's
    ``loss_cot=dict(type='BestMemberDistillationLoss', loss_weight=0.5)``.

    Args:
        loss_weight: the target weight lambda.
    """

    needs_member_losses = True

    def forward(self, logits: Sequence[torch.Tensor], member_losses=None) -> torch.Tensor:
        """Weighted mean KL of the students to the teacher.

        Args:
            logits: one tensor per member, (..., num_classes), all equal shapes.
            member_losses: (S,) each member's supervised loss of the batch
                (:func:`member_loss_totals`); the lowest is the teacher, ties go
                to the lower index.

        Raises:
            ValueError: no ``member_losses``, or not one per member.
        """
        if len(logits) < 2:
            return logits[0].new_zeros((), dtype=torch.float32)
        if member_losses is None or len(member_losses) != len(logits):
            raise ValueError(f'{type(self).__name__} needs the supervised loss of each of the '
                             f'{len(logits)} members, found {member_losses!r}')
        shapes = {tuple(z.shape) for z in logits}
        if len(shapes) != 1:
            raise ValueError(f'co-training needs equal logit shapes per member, found {shapes}')
        totals = torch.as_tensor(member_losses, dtype=torch.float32, device=logits[0].device)
        teacher = totals.argmin()  # first of the lowest; a tensor (no device sync)
        self.last_teacher = teacher.detach()
        log_p = torch.stack([F.log_softmax(z.float(), dim=-1) for z in logits])  # (S, ..., C)
        log_t = log_p.detach().index_select(0, teacher)
        kl = (log_t.exp() * (log_t - log_p)).sum(-1)  # (S, ...): each member to the teacher
        kl = kl.reshape(len(logits), -1).mean(1)
        students = (torch.arange(len(logits), device=kl.device) != teacher).float()
        return self.weight * (kl * students).sum() / (len(logits) - 1)
