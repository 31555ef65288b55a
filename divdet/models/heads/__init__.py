"""Divided classification heads."""
from .divided_cls_head import ENSEMBLE_MODES, DividedClsHead, combine_logits
from .dropout_linear_head import DropoutLinearClsHead

__all__ = ['ENSEMBLE_MODES', 'DividedClsHead', 'DropoutLinearClsHead', 'combine_logits']
