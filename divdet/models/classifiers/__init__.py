"""Divided classifiers."""
from .divided_image_classifier import DividedImageClassifier

__all__ = ['DividedImageClassifier']
