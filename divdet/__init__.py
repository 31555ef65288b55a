"""divdet: Divide and Co-training for MMDetection 3 and mmpretrain.

Importing divdet checks that the installed OpenMMLab packages are in the
supported ranges, makes checkpoint loading work on torch >= 2.6 without turning
off ``weights_only`` (see :mod:`divdet.utils.checkpoint`), and registers every
divdet component in mmdet's and mmpretrain's registries.
"""
from .utils.versions import check_dependencies
from .version import __version__

check_dependencies()

from .utils.checkpoint import install_checkpoint_safety  # noqa: E402

install_checkpoint_safety()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registers all)

__all__ = ['__version__']
