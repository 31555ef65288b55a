"""Data preprocessors."""
from .divided_data_preprocessor import DividedClsDataPreprocessor

__all__ = ['DividedClsDataPreprocessor']
