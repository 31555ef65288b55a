"""Divided necks."""
from .divided_ssd_neck import DividedSSDNeck

__all__ = ['DividedSSDNeck']
