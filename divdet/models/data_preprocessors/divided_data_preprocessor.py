"""DividedClsDataPreprocessor: batches one augmented view per member."""
from __future__ import annotations

from typing import Optional

import torch
from mmpretrain.models.utils import ClsDataPreprocessor

from divdet.models.data_preprocessors.checks import check_channels
from divdet.registry import register_model


@register_model
class DividedClsDataPreprocessor(ClsDataPreprocessor):
    """mmpretrain's ``ClsDataPreprocessor`` that also accepts per-member views.

    With :class:`~divdet.datasets.transforms.MemberViews` in the pipeline, the
    dataloader yields V views: V tensors (N, C, H, W) with ``default_collate``,
    or V sequences of N tensors (C, H, W) with mmengine's ``pseudo_collate``
    (the Runner's default). They are stacked to
    (N, V, C, H, W), converted to RGB and normalised view by view, and the
    batch augments (Mixup, CutMix) are applied to all views at once, so the
    members share the mixing partner and ratio (and, for CutMix, the box), as
    in the reference. Single-view batches go through the parent unchanged.
    """

    @staticmethod
    def split_views(inputs) -> Optional[list[torch.Tensor]]:
        """The batch as V tensors (N, C, H, W), or None for a single-view batch."""
        if not isinstance(inputs, (list, tuple)) or not inputs:
            return None
        first = inputs[0]
        if torch.is_tensor(first):  # default_collate: V batched views, or N single images
            return list(inputs) if first.dim() == 4 else None
        if isinstance(first, (list, tuple)) and first and torch.is_tensor(first[0]):
            return [torch.stack(list(view)) for view in inputs]  # pseudo_collate
        return None

    def forward(self, data: dict, training: bool = False) -> dict:
        """Normalise, and batch-augment across views with shared parameters."""
        if self._enable_normalize and self.mean.shape[0] > 1:
            check_channels(data['inputs'], self.mean.shape[0], data.get('data_samples'))
        views = self.split_views(data['inputs'])
        if views is None:
            return super().forward(data, training)
        x = self.cast_data(torch.stack(views, 1))  # (N, V, C, H, W)
        num_views, channels = x.shape[1], x.shape[2]
        if self.to_rgb and channels == 3:
            x = x.flip(2)
        x = x.float()
        if self._enable_normalize:
            x = (x - self.mean) / self.std
        # The parent sees one (N, V*C, H, W) tensor: labels and batch augments
        # are handled once per image, shared by every view.
        to_rgb, normalize = self.to_rgb, self._enable_normalize
        self.to_rgb, self._enable_normalize = False, False
        try:
            out = super().forward(dict(data, inputs=x.flatten(1, 2)), training)
        finally:
            self.to_rgb, self._enable_normalize = to_rgb, normalize
        out['inputs'] = out['inputs'].unflatten(1, (num_views, channels))
        return out
