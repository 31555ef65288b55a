"""Losses: the co-training (Jensen-Shannon) loss."""
from .cotraining_loss import (
    BestMemberDistillationLoss,
    CoTrainingLoss,
    jensen_shannon_divergence,
    member_loss_totals,
)

__all__ = ['BestMemberDistillationLoss', 'CoTrainingLoss', 'jensen_shannon_divergence',
           'member_loss_totals']
