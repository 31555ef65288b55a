"""CheckedDetDataPreprocessor: mmdet's DetDataPreprocessor with a channel check
and per-member views."""
from __future__ import annotations

import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor

from divdet.datasets.transforms.det_member_views import VIEWS_KEY
from divdet.models.data_preprocessors.checks import check_channels
from divdet.registry import register_model
from divdet.utils.errors import ImageError


@register_model
class CheckedDetDataPreprocessor(DetDataPreprocessor):
    """mmdet's ``DetDataPreprocessor`` that refuses images with the wrong channels
    and batches per-member views.

    With three mean/std values, a grayscale or RGBA image (e.g. loaded with
    ``color_type='unchanged'``) otherwise fails inside the normalisation with a
    broadcasting error, or, with ``bgr_to_rgb=True``, loses its fourth channel
    without a word. Here it is an :class:`~divdet.utils.ImageError` naming the
    image.

    Images packed by :class:`~divdet.datasets.transforms.DetMemberViews` carry S
    views stacked on the channel axis and ``member_views`` (one entry per view)
    in their metainfo:
    each view is converted and normalised on its own, the batch is padded as
    usual, and ``inputs`` comes out as (N, S, C, H, W), one view per member
    (the divided backbones take that shape). Everything else is the parent's.

    Images of one shape (what a fixed-size resize gives, as in SSD) are stacked
    first and converted, normalised and padded as one tensor: the parent's
    batched path, with the same values as its per-image one and a number of
    operators (kernel launches on a GPU) that does not grow with the batch.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        samples = data.get('data_samples') or []
        views = {_count(s.metainfo.get(VIEWS_KEY)) for s in samples}
        if views == {None} or not views:
            if self._enable_normalize and self.mean.shape[0] > 1:
                check_channels(data['inputs'], self.mean.shape[0], samples)
            inputs = data['inputs']
            if isinstance(inputs, (list, tuple)) and len(inputs) > 1 and all(
                    torch.is_tensor(x) and x.dim() == 3 and x.shape == inputs[0].shape
                    and x.dtype == inputs[0].dtype for x in inputs):
                data = dict(data, inputs=torch.stack(list(inputs)))
            return super().forward(data, training)
        if len(views) != 1 or None in views:
            raise ImageError(f'a batch mixes images with and without per-member views '
                             f'({sorted(v or 1 for v in views)} views); every image of a split '
                             'must go through the same DetMemberViews')
        (num_views, ) = views
        channels = self.mean.shape[0] if self._enable_normalize else 3
        inputs = []
        for i, x in enumerate(self.cast_data(data['inputs'])):
            if x.shape[0] != num_views * channels:
                path = samples[i].metainfo.get('img_path', f'image {i}')
                raise ImageError(f'expected {num_views} views of {channels} channels, found '
                                 f'{x.shape[0]} channels in {path}')
            x = x.float().unflatten(0, (num_views, channels))
            if self._channel_conversion and channels == 3:
                x = x.flip(1)  # BGR -> RGB, view by view
            if self._enable_normalize:
                x = (x - self.mean) / self.std
            inputs.append(x.flatten(0, 1))
        conversion, normalize = self._channel_conversion, self._enable_normalize
        self._channel_conversion, self._enable_normalize = False, False
        try:
            out = super().forward(dict(data, inputs=inputs), training)
        finally:
            self._channel_conversion, self._enable_normalize = conversion, normalize
        out['inputs'] = out['inputs'].unflatten(1, (num_views, channels))
        return out


def _count(views) -> int | None:
    """The number of views in a sample's ``member_views`` metainfo (None: no views)."""
    return None if views is None else len(views)
