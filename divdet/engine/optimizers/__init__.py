"""Optimizer wrapper constructors."""
from .divided_constructor import DividedOptimWrapperConstructor, find_num_members

__all__ = ['DividedOptimWrapperConstructor', 'find_num_members']
