"""CheckedDetDataPreprocessor: mmdet's DetDataPreprocessor with a channel check."""
from __future__ import annotations

from mmdet.models.data_preprocessors import DetDataPreprocessor

from divdet.models.data_preprocessors.checks import check_channels
from divdet.registry import register_model


@register_model
class CheckedDetDataPreprocessor(DetDataPreprocessor):
    """mmdet's ``DetDataPreprocessor`` that refuses images with the wrong channels.

    With three mean/std values, a grayscale or RGBA image (e.g. loaded with
    ``color_type='unchanged'``) otherwise fails inside the normalisation with a
    broadcasting error, or, with ``bgr_to_rgb=True``, loses its fourth channel
    without a word. Here it is an :class:`~divdet.utils.ImageError` naming the
    image. Everything else is the parent's.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        if self._enable_normalize and self.mean.shape[0] > 1:
            check_channels(data['inputs'], self.mean.shape[0], data.get('data_samples'))
        return super().forward(data, training)
