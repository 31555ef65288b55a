"""Checkpoints that work on torch >= 2.6 without turning ``weights_only`` off.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine's
checkpoints carry a few non-tensor objects in ``message_hub`` and ``meta``
(``HistoryBuffer``, numpy arrays and scalars), so resume and ``load_from`` fail
with ``UnpicklingError``. divdet does not switch ``weights_only`` off: it adds
exactly the types mmengine's checkpoints need to torch's allow-list and keeps the
safe unpickler for every file. Anything else in a checkpoint is refused with an
:class:`UnsafeCheckpointError` that names the offending type.

It also makes local writes atomic: a checkpoint (or ``last_checkpoint``) is
written to a temporary file in the same folder and renamed into place, so an
interrupted save never leaves a half-written file behind.
"""
from __future__ import annotations

import os.path as osp
import pickle
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from divdet.utils.errors import DivdetError
from divdet.utils.files import atomic_write


def _numpy_globals() -> list:
    """numpy objects that pickled arrays, dtypes and scalars refer to."""
    try:  # numpy >= 2 keeps them in numpy._core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
        np.uint32, np.uint64, np.float16, np.float32, np.float64)]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
            *dtype_classes]


#: Attributes that ``getattr`` may resolve while unpickling: pickle protocol 2
#: stores ``HistoryBuffer``'s statistics methods as ``getattr(HistoryBuffer, name)``.
_GETATTR_ALLOWED = {HistoryBuffer: frozenset({'min', 'max', 'current', 'mean'})}


def restricted_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` inside checkpoints.

    Only resolves the attributes in ``_GETATTR_ALLOWED``; a general ``getattr``
    would let a crafted checkpoint reach any method of an allowed class.
    """
    if name not in _GETATTR_ALLOWED.get(obj, ()):
        raise pickle.UnpicklingError(f'checkpoint asks for getattr({obj!r}, {name!r}), '
                                     'which is not on the allow-list')
    return getattr(obj, name)


#: The only non-tensor globals a divdet/mmengine checkpoint may reference.
ALLOWED_CHECKPOINT_GLOBALS: list = [HistoryBuffer, *_numpy_globals()]


class UnsafeCheckpointError(DivdetError, pickle.UnpicklingError):
    """A checkpoint references an object that is not on the allow-list."""


def install_checkpoint_safety() -> None:
    """Allow mmengine's checkpoint types and route local loads through divdet.

    Idempotent. Called when divdet is imported.
    """
    torch.serialization.add_safe_globals(
        [*ALLOWED_CHECKPOINT_GLOBALS, (restricted_getattr, '__builtin__.getattr'),
         (restricted_getattr, 'builtins.getattr')])
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    # get_file_backend caches instances; drop cached plain local backends.
    from mmengine.fileio import io as mmengine_io
    for key, backend in list(mmengine_io.backend_instances.items()):
        if type(backend) is LocalBackend:
            del mmengine_io.backend_instances[key]


def load_from_local_safe(filename: str, map_location: Any = None) -> Any:
    """Load a local checkpoint with torch's safe unpickler.

    Args:
        filename: path of the checkpoint file.
        map_location: as for :func:`torch.load`.

    Returns:
        The loaded object, usually a dict with ``state_dict``, ``meta`` and,
        for resumable checkpoints, ``optimizer`` and ``message_hub``.

    Raises:
        FileNotFoundError: if the file does not exist.
        UnsafeCheckpointError: if the file references a type outside
            :data:`ALLOWED_CHECKPOINT_GLOBALS`, or is not a torch checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist')
    if osp.getsize(filename) == 0:
        raise UnsafeCheckpointError(f'{filename!r} is not a readable torch checkpoint: the file is '
                                    'empty (0 bytes)')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(str(exc))
        if 'GLOBAL' not in reason and 'getattr' not in reason:
            raise UnsafeCheckpointError(
                f'{filename!r} is not a readable torch checkpoint (truncated, corrupt or not '
                f'written by torch.save): {reason}') from None
        raise UnsafeCheckpointError(
            f'refused to load checkpoint {filename!r}: {reason}. divdet loads only '
            f'tensors, containers and these types: {_allowed_names()}. '
            'If you trust the file, convert it to a '
            'plain state dict first, e.g. torch.save({"state_dict": '
            'torch.load(path, weights_only=False)["state_dict"]}, new_path).') from None
    except (RuntimeError, EOFError, ValueError, IndexError, KeyError, TypeError,
            AttributeError, OSError) as exc:  # random bytes fail anywhere in the unpickler
        raise UnsafeCheckpointError(
            f'{filename!r} is not a readable torch checkpoint (truncated, corrupt or not '
            f'written by torch.save): {_unpickler_reason(str(exc)) or type(exc).__name__}'
        ) from None


#: Paragraphs of torch's weights-only error that are advice, not the reason.
_BOILERPLATE = ('Weights only load failed', 'Please file an issue', 'Check the documentation',
                'In PyTorch 2.6')


def _unpickler_reason(message: str) -> str:
    """The reason in torch's weights-only error, on one line (e.g. "Trying to load
    unsupported GLOBAL posix.system whose module posix is blocked")."""
    parts = []
    for line in message.splitlines():
        line = line.strip()
        if 'WeightsUnpickler error:' in line:
            line = line.split('WeightsUnpickler error:', 1)[1].strip()
        elif line.startswith(_BOILERPLATE):
            continue
        if line:
            parts.append(line.rstrip('.'))
    return '; '.join(parts) or message.strip().splitlines()[-1] if message.strip() else ''


def _allowed_names() -> str:
    return ', '.join(sorted({f'{g.__module__}.{g.__qualname__}'
                             for g in ALLOWED_CHECKPOINT_GLOBALS}))


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with write-then-rename ``put``.

    The bytes go to a temporary file in the target folder, which is flushed,
    fsynced and renamed over the target with :func:`os.replace` (atomic on
    POSIX). A process killed mid-write leaves the previous file intact.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write ``obj`` to ``filepath`` atomically."""
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        """Write the text ``obj`` to ``filepath`` atomically."""
        atomic_write(obj.encode(encoding), filepath)
