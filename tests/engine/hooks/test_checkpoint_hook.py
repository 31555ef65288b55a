"""SafeCheckpointHook: a checkpoint that cannot be written (full disk, quota, read-only
folder) is one CheckpointWriteError, and the previous checkpoint stays."""
import errno
import os
from collections import deque
from types import SimpleNamespace

import pytest
from mmengine.fileio import get_file_backend
from mmengine.logging import MessageHub

from divdet.engine.hooks import SafeCheckpointHook
from divdet.utils import CheckpointWriteError


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, code):
    previous = tmp_path / 'epoch_1.pth'
    previous.write_bytes(b'the previous checkpoint')

    def save_checkpoint(out_dir, filename, *args, **kwargs):
        raise OSError(code, os.strerror(code))
    hub = MessageHub.get_instance(f'ckpt-hook-{code}')
    hub.update_info('last_ckpt', str(previous))
    runner = SimpleNamespace(message_hub=hub, work_dir=str(tmp_path),
                             save_checkpoint=save_checkpoint)
    hook = SafeCheckpointHook(interval=1, max_keep_ckpts=1)
    hook.out_dir = str(tmp_path)
    hook.file_backend = get_file_backend(str(tmp_path))
    hook.keep_ckpt_ids = deque([1], maxlen=1)
    with pytest.raises(CheckpointWriteError, match=rf'could not write checkpoint .*epoch_2.pth: '
                       rf'{os.strerror(code)} \(errno {code}\); the previous checkpoint '
                       rf'.*epoch_1.pth is intact and --resume continues from it'):
        hook._save_checkpoint_with_step(runner, 2, meta={})
    assert previous.read_bytes() == b'the previous checkpoint'  # not pruned
