"""Losses: the co-training (Jensen-Shannon) loss."""
from .cotraining_loss import CoTrainingLoss, jensen_shannon_divergence

__all__ = ['CoTrainingLoss', 'jensen_shannon_divergence']
