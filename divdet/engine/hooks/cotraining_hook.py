"""CoTrainingHook: schedules the weight of the co-training loss."""
from __future__ import annotations

from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from divdet.datasets.transforms import DetMemberViews, MemberViews
from divdet.engine.optimizers import find_num_members
from divdet.models.losses import CoTrainingLoss
from divdet.registry import register_hook


def set_member_views(dataset, num_members: int) -> int:
    """Give every ``MemberViews`` / ``DetMemberViews`` without a count in
    ``dataset`` (wrappers included) ``num_members`` views; returns how many
    were set."""
    found, seen = 0, set()
    stack = [dataset]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (MemberViews, DetMemberViews)):
            if obj.num_views is None:
                obj.set_num_views(num_members)
                found += 1
            continue
        for attr in ('dataset', 'datasets', 'pipeline', 'transforms'):
            child = getattr(obj, attr, None)
            if isinstance(child, (list, tuple)):
                stack.extend(child)
            elif child is not None:
                stack.append(child)
    return found


@register_hook
class CoTrainingHook(Hook):
    """Linear warm-up of the co-training weight, as in the reference.

    With lambda the ``loss_weight`` of every :class:`CoTrainingLoss` in the
    model, the weight used during epoch ``e`` (or iteration, with
    ``by_epoch=False``) is::

        lambda_e = max(lambda * e / warmup, min_weight)   if e < warmup
        lambda_e = lambda                                 otherwise

    The weight is recomputed from the runner's epoch/iteration before every
    epoch (or iteration), so a resumed run continues with the right value; it
    is also stored in the loss's ``weight`` buffer (saved in checkpoints) and
    logged as ``train/cot_weight``.

    It also sets the view count of every
    :class:`~divdet.datasets.transforms.MemberViews` in the training pipeline
    that has none to the model's S (one augmented view per member), so S is
    written once in a config.

    Args:
        warmup: warm-up length E_w in epochs (iterations if not ``by_epoch``).
            40 by default, 60 in the ImageNet recipes.
        min_weight: floor of the weight during warm-up (0.005).
        by_epoch: schedule per epoch (default) or per iteration.
    """

    priority = 'NORMAL'

    def __init__(self, warmup: int = 40, min_weight: float = 0.005, by_epoch: bool = True) -> None:
        if warmup < 0:
            raise ValueError(f'warmup must be >= 0, found {warmup}')
        self.warmup = warmup
        self.min_weight = min_weight
        self.by_epoch = by_epoch

    def weight_at(self, loss_weight: float, step: int) -> float:
        """The scheduled weight at epoch (or iteration) ``step``."""
        if step >= self.warmup:
            return loss_weight
        return max(loss_weight * step / self.warmup, self.min_weight)

    def _apply(self, runner, step: int) -> Optional[float]:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        weight = None
        for module in model.modules():
            if isinstance(module, CoTrainingLoss):
                weight = self.weight_at(module.loss_weight, step)
                module.weight.fill_(weight)
        if weight is not None:
            runner.message_hub.update_scalar('train/cot_weight', weight)
        return weight

    def before_train(self, runner) -> None:
        """Set member views, and the weight for the (possibly resumed) starting point."""
        set_member_views(runner.train_dataloader.dataset, find_num_members(runner.model))
        self._apply(runner, runner.epoch if self.by_epoch else runner.iter)

    def before_train_epoch(self, runner) -> None:
        """Epoch schedule: update at the start of each epoch."""
        if self.by_epoch:
            self._apply(runner, runner.epoch)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """Iteration schedule: update before every iteration."""
        if not self.by_epoch:
            self._apply(runner, runner.iter)
