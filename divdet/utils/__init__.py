"""Utilities: version checks and torch >= 2.6 checkpoint handling."""
from .checkpoint import (ALLOWED_CHECKPOINT_GLOBALS, AtomicLocalBackend,
                         UnsafeCheckpointError, install_checkpoint_safety,
                         load_checkpoint_file)
from .versions import SUPPORTED_VERSIONS, check_dependencies

__all__ = [
    'ALLOWED_CHECKPOINT_GLOBALS', 'AtomicLocalBackend', 'UnsafeCheckpointError',
    'install_checkpoint_safety', 'load_checkpoint_file', 'SUPPORTED_VERSIONS',
    'check_dependencies'
]
