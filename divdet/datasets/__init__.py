"""Datasets and transforms: checked COCO, generated shapes (detection), digits
(classification), per-member views."""
from .coco import CheckedCOCO, CheckedCocoDataset
from .digits import DIGIT_CLASSES, make_digits_dataset
from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import make_shapes_dataset
from .transforms import MemberViews

__all__ = [
    'CheckedCOCO', 'CheckedCocoDataset', 'DIGIT_CLASSES', 'make_digits_dataset', 'SHAPES_CLASSES',
    'make_shapes_dataset', 'MemberViews'
]
