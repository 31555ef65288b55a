"""Writing results so that nothing is lost and a failed write is one line.

Every file divdet writes (checkpoints, ``--out`` pickles, fused detections,
metrics, drawings, converted weights, datasets) goes through
:func:`atomic_write`: a temporary ``.NAME.*.part`` file in the target folder,
fsynced and renamed over the target, so a killed or failed write leaves the
previous file intact. Leftover ``.NAME.PID.*.part`` files of a killed write of the
same target are removed by the next write. The tools call :func:`write_output`,
which turns the ``OSError`` of a full disk, a read-only folder or a path under
a file into an :class:`~divdet.utils.errors.OutputError`, and check their
destinations with :func:`check_writable` / :func:`check_output_dir` before any
work is done.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from divdet.utils.errors import OutputError


def atomic_write(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath``: temporary file, fsync, then rename.

    Leftover temporary files of an earlier, killed write of ``filepath``
    (``.NAME.PID.*.part`` of processes that no longer run) are removed first.
    """
    filepath = str(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    remove_stale_parts(filepath)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(filepath)}.{os.getpid()}.',
                               suffix='.part', dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; match open()
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_parts(filepath: Union[str, Path]) -> list[str]:
    """Remove the ``.NAME.PID.*.part`` files a killed :func:`atomic_write` of ``filepath`` left.

    A temporary file is stale when the process that wrote it (the PID in its name)
    no longer runs; the temporary files of live processes (e.g. another rank
    writing the same file) are left alone.
    """
    folder = osp.dirname(osp.abspath(str(filepath)))
    name = '.' + osp.basename(str(filepath)) + '.'
    removed = []
    for stale in glob.glob(osp.join(glob.escape(folder), glob.escape(name) + '*.part')):
        pid = osp.basename(stale)[len(name):].split('.', 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        try:
            os.unlink(stale)
            removed.append(stale)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def write_output(data: bytes, path: Union[str, Path], what: str) -> None:
    """:func:`atomic_write`, with a failure as one :class:`OutputError` line.

    Args:
        data: the bytes to write.
        path: the destination file.
        what: how the user named it, e.g. ``'--out'``.
    """
    path = str(path)
    if osp.isdir(path):
        raise OutputError(f'{what} {path!r} is a folder; expected a file name')
    try:
        atomic_write(data, path)
    except OSError as err:
        raise OutputError(f'{what} {path!r} could not be written ({_reason(err)}); nothing '
                          'was written in its place') from None


def check_writable(path: Union[str, Path], what: str) -> None:
    """Fail now, not after the work, if the file ``path`` cannot be written.

    Creates the missing folders of ``path`` (as the writer would) and checks
    that a file can be created in the folder.

    Raises:
        OutputError: the path is a folder, or its folder cannot be created or
            written.
    """
    path = str(path)
    if osp.isdir(path):
        raise OutputError(f'{what} {path!r} is a folder; expected a file name')
    check_output_dir(osp.dirname(osp.abspath(path)), what, shown=path)


def check_output_dir(folder: Union[str, Path], what: str, shown: str | None = None) -> None:
    """Create the folder ``folder`` if needed and check a file can be written in it.

    Raises:
        OutputError: it is a file, or cannot be created, or is not writable.
    """
    folder = str(folder)
    shown = folder if shown is None else shown
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OutputError(f'{what} {shown!r}: cannot create the folder {folder!r} '
                          f'({_reason(err)})') from None
    try:
        fd, probe = tempfile.mkstemp(prefix='.divdet-write-check.', dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f'{what} {shown!r}: cannot write in {folder!r} '
                          f'({_reason(err)})') from None


__all__ = ['atomic_write', 'remove_stale_parts', 'write_output', 'check_writable',
           'check_output_dir']
