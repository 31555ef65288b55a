"""Writes that fail are one OutputError line; killed writes leave nothing behind."""
import errno
import os

import pytest

from divdet.utils.errors import OutputError
from divdet.utils.files import (
    atomic_write,
    check_output_dir,
    check_writable,
    remove_stale_parts,
    write_output,
)


def test_stale_parts_of_a_killed_write_are_removed_by_the_next(tmp_path):
    target = tmp_path / 'preds.pkl'
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f'.preds.pkl.{dead}.abc123.part'  # what a SIGKILL mid-write leaves
    stale.write_bytes(b'x' * 1000)
    old_style = tmp_path / '.preds.pkl.abc123.part'  # without a PID
    old_style.write_bytes(b'x')
    live = tmp_path / f'.preds.pkl.{os.getppid()}.abc123.part'  # another rank writing now
    live.write_bytes(b'z')
    other = tmp_path / f'.other.pkl.{dead}.abc123.part'  # another file's: not touched
    other.write_bytes(b'y')
    atomic_write(b'data', target)
    assert target.read_bytes() == b'data'
    assert not stale.exists() and not old_style.exists()
    assert live.exists() and other.exists()
    assert remove_stale_parts(tmp_path / 'other.pkl') == [str(other)]


@pytest.mark.parametrize('case', ['folder', 'under a file', 'full disk'])
def test_a_write_that_fails_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, case):
    (tmp_path / 'file').write_text('a file')
    path = {'folder': tmp_path, 'under a file': tmp_path / 'file' / 'out.json',
            'full disk': tmp_path / 'out.json'}[case]
    if case == 'full disk':
        path.write_text('previous')

        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(OutputError, match=r"^--out '.*' (is a folder|could not be written)"):
        write_output(b'new', path, '--out')
    if case == 'full disk':
        assert path.read_text() == 'previous'
        assert not list(tmp_path.glob('.*.part'))
        assert 'No space left on device' in str(pytest.raises(
            OutputError, write_output, b'new', path, '--out').value)


def test_checks_before_the_work(tmp_path):
    (tmp_path / 'file').write_text('a file')
    with pytest.raises(OutputError, match='cannot create the folder'):
        check_writable(tmp_path / 'file' / 'x.pkl', '--out')
    with pytest.raises(OutputError, match='is a folder; expected a file name'):
        check_writable(tmp_path, '--out')
    with pytest.raises(OutputError, match='--work-dir .*cannot create the folder'):
        check_output_dir(tmp_path / 'file', '--work-dir')
    check_output_dir(tmp_path / 'new' / 'deep', '--work-dir')
    assert (tmp_path / 'new' / 'deep').is_dir()
