"""Divided classification heads."""
from .divided_cls_head import ENSEMBLE_MODES, DividedClsHead, combine_logits

__all__ = ['ENSEMBLE_MODES', 'DividedClsHead', 'combine_logits']
