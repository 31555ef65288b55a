"""Divided dense heads: the member protocol (DividedDenseHead) and SSD's batched head."""
from .divided_dense_head import DEFAULT_ENSEMBLE, DividedDenseHead
from .divided_ssd_head import DividedSSDHead

__all__ = ['DEFAULT_ENSEMBLE', 'DividedDenseHead', 'DividedSSDHead']
