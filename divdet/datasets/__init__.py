"""Datasets and transforms: checked COCO, generated shapes (detection), digits
(classification), per-member views."""
from .coco import CheckedCOCO, CheckedCocoDataset
from .digits import DIGIT_CLASSES, make_digits_dataset
from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import HARD_CLASSES as HARD_SHAPES_CLASSES
from .shapes import make_hard_shapes_dataset, make_shapes_dataset
from .transforms import MemberViews

__all__ = [
    'CheckedCOCO', 'CheckedCocoDataset', 'DIGIT_CLASSES', 'make_digits_dataset', 'SHAPES_CLASSES',
    'HARD_SHAPES_CLASSES', 'make_hard_shapes_dataset', 'make_shapes_dataset', 'MemberViews'
]
