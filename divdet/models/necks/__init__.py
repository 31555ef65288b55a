"""Divided necks."""
from .divided_fpn import DividedFPN
from .divided_neck import DividedNeck
from .divided_ssd_neck import DividedSSDNeck

__all__ = ['DividedFPN', 'DividedNeck', 'DividedSSDNeck']
