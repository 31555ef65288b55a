"""divdet: Divide and Co-training for MMDetection 3 and mmpretrain."""
from .version import __version__

__all__ = ['__version__']
