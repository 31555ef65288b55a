"""Training hooks."""
from .checkpoint_hook import SafeCheckpointHook
from .cotraining_hook import CoTrainingHook
from .progress_bar_hook import ProgressBarHook

__all__ = ['CoTrainingHook', 'ProgressBarHook', 'SafeCheckpointHook']
