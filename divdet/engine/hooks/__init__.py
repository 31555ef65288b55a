"""Training hooks."""
from .cotraining_hook import CoTrainingHook

__all__ = ['CoTrainingHook']
