"""Datasets: the generated shapes dataset for demos and tests."""
from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import make_shapes_dataset

__all__ = ['SHAPES_CLASSES', 'make_shapes_dataset']
