"""Divided detectors."""
from .divided_single_stage import DividedSingleStageDetector

__all__ = ['DividedSingleStageDetector']
