"""The co-training loss: generalised Jensen-Shannon divergence across members.

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

    def forward(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """Weighted mean JS divergence.

        Args:
            logits: one tensor per member, each (num_samples, num_classes) or
                any (..., num_classes) shape, all equal.

        Returns:
            Scalar float32 loss. Zero for a single member.
        """
        if len(logits) < 2:
            return logits[0].new_zeros((), dtype=torch.float32)
        shapes = {tuple(z.shape) for z in logits}
        if len(shapes) != 1:
            raise ValueError(f'co-training needs equal logit shapes per member, found {shapes}')
        return self.weight * jensen_shannon_divergence(logits).mean()
