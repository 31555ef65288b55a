"""ProgressBarHook: a progress bar over training iterations and test/val batches."""
from __future__ import annotations

import sys

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from divdet.registry import register_hook


@register_hook
class ProgressBarHook(Hook):
    """Shows mmengine's ``ProgressBar`` for training, validation and testing.

    Meant for interactive runs such as the demo; only the main process draws.

    Args:
        bar_width: width of the bar in characters.
    """

    priority = 'VERY_LOW'

    def __init__(self, bar_width: int = 40) -> None:
        self.bar_width = bar_width
        self._bar = None

    def _start(self, total: int) -> None:
        self._bar = ProgressBar(total, self.bar_width, file=sys.stdout) \
            if is_main_process() and total > 0 else None

    def _step(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def _finish(self) -> None:
        if self._bar is not None:
            sys.stdout.write('\n')
            self._bar = None

    def before_train(self, runner) -> None:
        """Start the training bar at the current (possibly resumed) iteration."""
        self._start(runner.max_iters - runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Advance the training bar."""
        self._step()

    def after_train(self, runner) -> None:
        """Close the training bar."""
        self._finish()

    def before_val_epoch(self, runner) -> None:
        """Pause the training bar and start one for validation."""
        self._train_bar, self._bar = self._bar, None
        self._start(len(runner.val_dataloader))

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Advance the validation bar."""
        self._step()

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Close the validation bar and resume the training one."""
        self._finish()
        self._bar = getattr(self, '_train_bar', None)

    def before_test_epoch(self, runner) -> None:
        """Start the test bar."""
        self._start(len(runner.test_dataloader))

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Advance the test bar."""
        self._step()

    def after_test_epoch(self, runner, metrics=None) -> None:
        """Close the test bar."""
        self._finish()
