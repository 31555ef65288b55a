"""Data preprocessors."""
from .checked_det_data_preprocessor import CheckedDetDataPreprocessor
from .divided_data_preprocessor import DividedClsDataPreprocessor

__all__ = ['CheckedDetDataPreprocessor', 'DividedClsDataPreprocessor']
