"""Checkpoints on torch >= 2.6: allowed types load, anything else is refused."""
import os

import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

import divdet  # noqa: F401  (installs the checkpoint safety)
from divdet.utils import AtomicLocalBackend, UnsafeCheckpointError


class NotAllowed:
    """Any class that is not on the allow-list."""


def test_mmengine_objects_round_trip(tmp_path):
    hub = MessageHub.get_instance('ckpt-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', 3)
    ckpt = {
        'state_dict': {'w': torch.randn(3)},
        'message_hub': hub.state_dict(),
        'meta': {'seed': 0, 'np': __import__('numpy').float64(2.0)},
    }
    path = str(tmp_path / 'ok.pth')
    save_checkpoint(ckpt, path)
    loaded = _load_checkpoint(path, map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], ckpt['state_dict']['w'])
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == 1.5
    assert buffer.statistics('mean') == 1.5  # statistics methods survived unpickling


def test_unknown_object_is_refused(tmp_path):
    path = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': {}, 'meta': {'payload': NotAllowed()}}, path)
    with pytest.raises(UnsafeCheckpointError, match='NotAllowed'):
        _load_checkpoint(path, map_location='cpu')


def test_getattr_is_restricted(tmp_path):
    """A crafted pickle calling getattr on an allowed class is refused."""

    class Evil:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, 'update'))

    path = str(tmp_path / 'evil.pth')
    torch.save({'meta': {'x': Evil()}}, path)
    with pytest.raises(UnsafeCheckpointError, match='getattr'):
        _load_checkpoint(path, map_location='cpu')


def test_truncated_file_gives_clear_error(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'state_dict': {'w': torch.randn(1000)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UnsafeCheckpointError, match='not a readable torch checkpoint'):
        _load_checkpoint(str(path), map_location='cpu')


def test_missing_file():
    with pytest.raises(FileNotFoundError, match='does not exist'):
        _load_checkpoint('/nonexistent/ckpt.pth')


def test_local_writes_are_atomic(tmp_path, monkeypatch):
    backend = get_file_backend(str(tmp_path / 'x.pth'))
    assert isinstance(backend, AtomicLocalBackend)
    target = tmp_path / 'x.pth'
    target.write_bytes(b'old')

    def boom(fd):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'fsync', boom)
    with pytest.raises(OSError, match='disk full'):
        backend.put(b'new contents', target)
    assert target.read_bytes() == b'old'  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ['x.pth']  # no partial file left
    monkeypatch.undo()
    backend.put(b'new contents', target)
    assert target.read_bytes() == b'new contents'


def test_plain_data_round_trip_and_loads_without_divdet(tmp_path):
    """What mmengine keeps as objects is stored as tensors, numbers and strings:
    plain ``torch.load(weights_only=True)`` in an interpreter without divdet reads it,
    and :func:`from_plain_data` rebuilds equal objects."""
    import subprocess
    import sys

    import numpy as np

    from divdet.utils import from_plain_data, to_plain_data
    hub = MessageHub.get_instance('plain-test')
    for value in (1.5, 0.25, 3.0):
        hub.update_scalar('train/loss', value, count=2)
    hub.update_info('keep_ckpt_ids', [1, 2])
    original = {
        'message_hub': hub.state_dict(),
        'meta': {'seed': np.int64(7), 'scale': np.float32(0.5), 'ids': np.arange(3),
                 'names': np.array(['a', 'bc']), 'pair': (np.float64(1.0), 'x'),
                 'flags': np.array([True, False])},
    }
    path = tmp_path / 'plain.pth'
    torch.save(to_plain_data(original), path)
    code = ('import sys, torch; torch.load(sys.argv[1], weights_only=True); '
            'assert "divdet" not in sys.modules and "mmengine" not in sys.modules')
    proc = subprocess.run([sys.executable, '-c', code, str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-1500:]

    restored = from_plain_data(torch.load(path, weights_only=True))
    buffer = restored['message_hub']['log_scalars']['train/loss']
    ref = original['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.max_length == ref.max_length
    for got, want in zip(buffer.data, ref.data):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert buffer.mean() == ref.mean() and buffer.current() == 3.0
    assert restored['message_hub']['runtime_info'] == original['message_hub']['runtime_info']
    meta = restored['meta']
    for key in ('seed', 'scale'):
        assert type(meta[key]) is type(original['meta'][key]) and meta[key] == original['meta'][key]
    for key in ('ids', 'names', 'flags'):
        assert meta[key].dtype == original['meta'][key].dtype
        assert np.array_equal(meta[key], original['meta'][key])
    assert isinstance(meta['pair'], tuple) and meta['pair'] == (1.0, 'x')
    assert type(meta['pair'][0]) is np.float64
