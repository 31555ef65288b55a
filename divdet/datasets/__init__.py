"""Datasets and transforms: generated shapes (detection), digits (classification),
per-member views."""
from .digits import DIGIT_CLASSES, make_digits_dataset
from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import make_shapes_dataset
from .transforms import MemberViews

__all__ = ['DIGIT_CLASSES', 'make_digits_dataset', 'SHAPES_CLASSES', 'make_shapes_dataset',
           'MemberViews']
