"""The co-training losses: generalised Jensen-Shannon divergence across members,
or distillation from the best member of the batch.

For member logits z_1..z_S with p_i = softmax(z_i) (Zhao et al., TIP 2022,
Eq. 3):

    L_cot = H(mean_i p_i) - mean_i H(p_i)

averaged over the samples (images in classification, anchors x images in
detection). It is 0 when all members agree and positive otherwise; gradients
flow into every member (no detached target side, no temperature). It is
computed in float32 whatever the input dtype, so it is safe under AMP.

Heads with sigmoid classifiers (RetinaNet, FCOS, ATSS) predict for each anchor or
point one Bernoulli distribution per class, not one distribution over the
classes. With ``activation='sigmoid'`` the term is the same divergence over each
class's Bernoulli pair (p, 1 - p), summed over the classes:

    L_cot = sum_c [ H_b(mean_i p_ic) - mean_i H_b(p_ic) ],  H_b(q) = -q log q - (1-q) log(1-q)
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from divdet.registry import register_model

ACTIVATIONS = ('softmax', 'sigmoid')


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f'co-training activation must be one of {ACTIVATIONS}, found '
                         f'{activation!r}')


def jensen_shannon_divergence(logits: Sequence[torch.Tensor],
                              activation: str = 'softmax') -> torch.Tensor:
    """Generalised JS divergence of S members' predictions, per sample.

    Args:
        logits: S tensors of the same shape (..., num_classes).
        activation: ``'softmax'``: one categorical distribution over the classes;
            ``'sigmoid'``: one Bernoulli distribution per class, the divergences
            summed over the classes.

    Returns:
        Tensor of shape (...,): H(mean p) - mean H(p), in float32.
    """
    _check_activation(activation)
    if activation == 'sigmoid':
        return _bernoulli_jensen_shannon(logits)
    log_p = torch.stack([F.log_softmax(z.float(), dim=-1) for z in logits])  # (S, ..., C)
    p = log_p.exp()
    mean_entropy = -(p * log_p).sum(-1).mean(0)
    p_mean = p.mean(0)
    # log of the mean probability, computed stably from the members' log-probs.
    log_p_mean = torch.logsumexp(log_p, dim=0) - torch.log(
        torch.tensor(float(len(logits)), device=log_p.device))
    entropy_of_mean = -(p_mean * log_p_mean).sum(-1)
    return entropy_of_mean - mean_entropy


def _bernoulli_log_probs(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """(2, S, ..., C): log p and log (1 - p) of each member's per-class sigmoid, stably."""
    z = torch.stack([t.float() for t in logits])
    return torch.stack([F.logsigmoid(z), F.logsigmoid(-z)])


def _bernoulli_jensen_shannon(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    log_p = _bernoulli_log_probs(logits)  # (2, S, ..., C): the outcomes 1 and 0
    p = log_p.exp()
    mean_entropy = -(p * log_p).sum(0).mean(0)  # (..., C)
    log_p_mean = torch.logsumexp(log_p, dim=1) - torch.log(
        torch.tensor(float(len(logits)), device=log_p.device))  # (2, ..., C)
    entropy_of_mean = -(log_p_mean.exp() * log_p_mean).sum(0)
    return (entropy_of_mean - mean_entropy).sum(-1)


@register_model
class CoTrainingLoss(nn.Module):
    """Weighted Jensen-Shannon co-training loss across members.

    The weight that is applied is the buffer ``weight``: it starts at
    ``loss_weight`` and :class:`~divdet.engine.hooks.CoTrainingHook` schedules
    it (linear warm-up per epoch). Being a buffer, it is saved in checkpoints.

    Args:
        loss_weight: the target weight lambda (0.5 in the reference).
        activation: ``'softmax'`` (SSD, classification: one distribution over the
            classes) or ``'sigmoid'`` (RetinaNet, FCOS, ATSS: a Bernoulli
            distribution per class); a divided head sets it from its classifier.
    """

    def __init__(self, loss_weight: float = 0.5, activation: str = 'softmax') -> None:
        super().__init__()
        _check_activation(activation)
        self.loss_weight = float(loss_weight)
        self.activation = activation
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
        return self.weight * jensen_shannon_divergence(logits, self.activation).mean()


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
        activation: ``'softmax'`` or ``'sigmoid'`` (then the KL divergence of each
            class's Bernoulli pair, summed over the classes).
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
        if self.activation == 'sigmoid':  # (S, ...): per class, summed over the classes
            log_p = _bernoulli_log_probs(logits)  # (2, S, ..., C)
            log_t = log_p.detach().index_select(1, teacher)
            kl = (log_t.exp() * (log_t - log_p)).sum(0).sum(-1)
        else:
            log_p = torch.stack([F.log_softmax(z.float(), dim=-1) for z in logits])  # (S, ..., C)
            log_t = log_p.detach().index_select(0, teacher)
            kl = (log_t.exp() * (log_t - log_p)).sum(-1)  # (S, ...): each member to the teacher
        kl = kl.reshape(len(logits), -1).mean(1)
        students = (torch.arange(len(logits), device=kl.device) != teacher).float()
        return self.weight * (kl * students).sum() / (len(logits) - 1)
