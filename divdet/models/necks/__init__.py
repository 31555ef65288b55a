"""Divided necks."""
from .divided_neck import DividedNeck
from .divided_ssd_neck import DividedSSDNeck

__all__ = ['DividedNeck', 'DividedSSDNeck']
