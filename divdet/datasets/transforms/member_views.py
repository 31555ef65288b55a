"""MemberViews: one independently augmented view of each image per member."""
from __future__ import annotations

from typing import Optional

from mmengine.registry import DefaultScope
from mmpretrain.datasets.transforms import MultiView

from divdet.registry import register_transform


@register_transform
class MemberViews(MultiView):
    """mmpretrain's ``MultiView`` with one view per member.

    ``num_views=None`` (the default) leaves the count to the model: the
    :class:`~divdet.engine.hooks.CoTrainingHook` sets it to the model's S
    before training starts, so S stays written once in a config. Each view
    runs the whole ``transforms`` pipeline with its own random draws; labels
    are shared.

    Args:
        transforms: the per-view pipeline (a list of transform configs).
        num_views: number of views; None to take the model's S.
    """

    def __init__(self, transforms: list, num_views: Optional[int] = None) -> None:
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            super().__init__([transforms], 1)
        self.num_views = None
        if num_views is not None:
            self.set_num_views(num_views)

    def set_num_views(self, num_views: int) -> None:
        """Produce ``num_views`` views from now on."""
        if not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f'num_views must be a positive integer, found {num_views!r}')
        self.num_views = [num_views]
        self.transforms = [self.pipelines[0]] * num_views

    def transform(self, results: dict) -> dict:
        """Apply the per-view pipeline once per member; ``img`` becomes a list."""
        if self.num_views is None:
            raise RuntimeError('MemberViews has no view count: add CoTrainingHook to '
                               'custom_hooks (it sets one view per member) or give num_views')
        return super().transform(results)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_views={self.num_views}, {self.pipelines[0]})'
