"""SafeCheckpointHook: mmengine's CheckpointHook that never leaves a run without a checkpoint.

mmengine's ``CheckpointHook`` with ``max_keep_ckpts=k`` deletes the oldest kept
checkpoint *before* it writes the next one. A process killed in that gap, or a
write that fails (a full disk), leaves ``k - 1`` checkpoints; with ``k = 1`` it
leaves none, and ``last_checkpoint`` names a deleted file, so ``--resume``
fails. This hook keeps mmengine's behaviour and arguments and changes only the
order of one save:

1. write the new checkpoint (to a temporary file, renamed into place:
   :class:`~divdet.utils.checkpoint.AtomicLocalBackend`);
2. publish it: ``last_checkpoint`` is rewritten atomically to name it;
3. only then delete the checkpoints beyond ``max_keep_ckpts``.

A write that fails with an ``OSError`` (ENOSPC, EDQUOT, EROFS, ...) stops the
run with a :class:`~divdet.utils.errors.CheckpointWriteError` that names the
file, the reason and the previous checkpoint, which stays loadable. Temporary
``.<name>.*.part`` files that a killed write left behind are removed when
training starts.

It also stores what mmengine keeps as objects in a checkpoint (the message hub's
``HistoryBuffer`` objects, numpy arrays and scalars) as plain data, and rebuilds them
when a checkpoint is loaded (:func:`~divdet.utils.checkpoint.to_plain_data`):
divdet's checkpoints load with ``torch.load(path, weights_only=True)`` in an
interpreter that never imported divdet.
"""
from __future__ import annotations

import glob
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from divdet.registry import register_hook
from divdet.utils.checkpoint import from_plain_data, to_plain_data
from divdet.utils.errors import CheckpointWriteError
from divdet.utils.files import atomic_write


@register_hook
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that deletes old checkpoints only after the new one is
    complete and named by ``last_checkpoint`` (see the module doc).

    Args:
        *args, **kwargs: as mmengine's ``CheckpointHook``.
    """

    def before_train(self, runner) -> None:
        """Set up as mmengine does, then remove stale temporary checkpoint files."""
        super().before_train(runner)
        if not is_main_process() or not osp.isdir(str(self.out_dir)):
            return
        stale = sorted(glob.glob(osp.join(str(self.out_dir), '.*.part')))
        for path in stale:
            os.unlink(path)
        if stale:
            print_log(f'removed {len(stale)} incomplete checkpoint file(s) left by an '
                      f'interrupted save: {", ".join(osp.basename(p) for p in stale)}',
                      logger='current')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store everything but the tensors' dicts as plain data (``weights_only`` loads it)."""
        for key in list(checkpoint):
            if key != 'state_dict':
                checkpoint[key] = to_plain_data(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Rebuild the objects :meth:`before_save_checkpoint` stored as plain data."""
        for key in list(checkpoint):
            if key != 'state_dict':
                checkpoint[key] = from_plain_data(checkpoint[key])

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """Save, publish, then prune (mmengine prunes first)."""
        expired = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        previous = runner.message_hub.get_info('last_ckpt')
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        try:
            runner.save_checkpoint(
                self.out_dir, ckpt_filename, self.file_client_args,
                save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
            if is_main_process():
                atomic_write(str(self.last_ckpt).encode(),
                             osp.join(runner.work_dir, 'last_checkpoint'))
        except OSError as err:
            kept = (f'the previous checkpoint {previous} is intact and --resume continues '
                    'from it once the cause is fixed' if previous
                    else 'no earlier checkpoint of this run exists')
            raise CheckpointWriteError(
                f'could not write checkpoint {self.last_ckpt}: {err.strerror or err} '
                f'(errno {err.errno}); {kept}') from None
        if not is_main_process():
            return
        for old in expired:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed saves folders
                self.file_backend.rmtree(path)
