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
