"""Utilities: version checks and torch >= 2.6 checkpoint handling."""
from .checkpoint import (
                         ALLOWED_CHECKPOINT_GLOBALS,
                         AtomicLocalBackend,
                         UnsafeCheckpointError,
                         from_plain_data,
                         install_checkpoint_safety,
                         load_from_local_safe,
                         to_plain_data,
)
from .errors import (
                     AnnotationError,
                     CheckpointMismatchError,
                     CheckpointWriteError,
                     ConfigError,
                     DivdetError,
                     FusionInputError,
                     ImageError,
                     MissingFileError,
                     NonFiniteLossError,
)
from .versions import SUPPORTED_VERSIONS, check_dependencies

__all__ = [
    'ALLOWED_CHECKPOINT_GLOBALS', 'AtomicLocalBackend', 'UnsafeCheckpointError',
    'install_checkpoint_safety', 'load_from_local_safe', 'to_plain_data', 'from_plain_data',
    'SUPPORTED_VERSIONS',
    'check_dependencies', 'AnnotationError', 'CheckpointMismatchError', 'CheckpointWriteError',
    'ConfigError',
    'DivdetError', 'FusionInputError', 'ImageError', 'MissingFileError', 'NonFiniteLossError'
]
