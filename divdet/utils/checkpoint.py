"""Checkpoints that work on torch >= 2.6 without turning ``weights_only`` off.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine's
checkpoints carry a few non-tensor objects in ``message_hub`` and ``meta``
(``HistoryBuffer``, numpy arrays and scalars), so resume and ``load_from`` fail
with ``UnpicklingError``. divdet does not switch ``weights_only`` off: it adds
exactly the types mmengine's checkpoints need to torch's allow-list and keeps the
safe unpickler for every file. Anything else in a checkpoint is refused with an
:class:`UnsafeCheckpointError` that names the offending type.

New checkpoints need no allow-list at all: :func:`to_plain_data` stores what
mmengine keeps as objects (``HistoryBuffer``, numpy arrays and scalars) as
tensors, numbers and strings in tagged dicts when a checkpoint is saved, and
:func:`from_plain_data` rebuilds the objects when it is loaded (both run in
:class:`~divdet.engine.hooks.SafeCheckpointHook`). So a divdet checkpoint loads
with plain ``torch.load(path, weights_only=True)`` in any interpreter, with or
without divdet (mmdet's ``DetInferencer(weights=...)`` included), and resumes
exactly. Checkpoints written before keep loading through the allow-list.

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


#: The key of the tag that marks an object stored as plain data.
PLAIN_TAG = '__divdet_plain__'


def to_plain_data(obj: Any) -> Any:
    """``obj`` with every ``HistoryBuffer``, numpy array and numpy scalar replaced by a
    tagged dict of tensors, numbers and strings (what ``weights_only`` loads).

    Containers (dict, list, tuple) are walked; other objects are returned as they are.
    """
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {PLAIN_TAG: 'HistoryBuffer', 'log': to_plain_data(log),
                'count': to_plain_data(count), 'max_length': int(obj.max_length)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in 'biuf':  # booleans and numbers: a tensor of the same dtype
            return {PLAIN_TAG: 'ndarray', 'data': torch.from_numpy(np.ascontiguousarray(obj))}
        return {PLAIN_TAG: 'ndarray', 'list': obj.tolist(), 'dtype': obj.dtype.str}
    if isinstance(obj, np.generic):
        return {PLAIN_TAG: 'scalar', 'value': obj.item(), 'dtype': obj.dtype.str}
    if isinstance(obj, dict):
        return {key: to_plain_data(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(to_plain_data(value) for value in obj)
    return obj


def from_plain_data(obj: Any) -> Any:
    """The inverse of :func:`to_plain_data`: tagged dicts become the objects again."""
    if isinstance(obj, dict):
        kind = obj.get(PLAIN_TAG)
        if kind == 'HistoryBuffer':
            return HistoryBuffer(from_plain_data(obj['log']), from_plain_data(obj['count']),
                                 obj['max_length'])
        if kind == 'ndarray':
            if 'data' in obj:
                return obj['data'].numpy().copy()
            return np.array(obj['list'], dtype=np.dtype(obj['dtype']))
        if kind == 'scalar':
            return np.dtype(obj['dtype']).type(obj['value'])
        return {key: from_plain_data(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(from_plain_data(value) for value in obj)
    return obj


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
