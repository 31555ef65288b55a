"""Evaluation metrics."""
from .divided_accuracy import DividedAccuracy
from .divided_coco_metric import DividedCocoMetric

__all__ = ['DividedAccuracy', 'DividedCocoMetric']
