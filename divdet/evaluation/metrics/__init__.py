"""Evaluation metrics."""
from .divided_coco_metric import DividedCocoMetric

__all__ = ['DividedCocoMetric']
