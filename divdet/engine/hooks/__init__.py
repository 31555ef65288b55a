"""Training hooks."""
from .cotraining_hook import CoTrainingHook
from .progress_bar_hook import ProgressBarHook

__all__ = ['CoTrainingHook', 'ProgressBarHook']
