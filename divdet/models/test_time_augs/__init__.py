"""Test-time augmentation of divided models."""
from .divided_det_tta import DividedDetTTAModel

__all__ = ['DividedDetTTAModel']
