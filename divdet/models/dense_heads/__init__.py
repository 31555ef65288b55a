"""Divided dense heads."""
from .divided_ssd_head import DEFAULT_ENSEMBLE, DividedSSDHead

__all__ = ['DEFAULT_ENSEMBLE', 'DividedSSDHead']
