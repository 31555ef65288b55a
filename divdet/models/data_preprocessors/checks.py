"""Input checks shared by divdet's data preprocessors."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from divdet.utils.errors import ImageError


def check_channels(inputs, expected: int, data_samples: Optional[Sequence] = None) -> None:
    """Raise :class:`ImageError` unless every image has ``expected`` channels.

    Args:
        inputs: a batch tensor (N, C, H, W), (N, V, C, H, W) or a sequence of
            (C, H, W) tensors (mmengine's ``pseudo_collate``), possibly nested
            once more for per-member views.
        expected: the channels the preprocessor normalises (``len(mean)``).
        data_samples: the batch's data samples; their ``img_path`` names the
            offending image.
    """
    def found(x) -> list[int]:
        if torch.is_tensor(x):
            return [x.shape[-3]] * (x.shape[0] if x.dim() >= 4 else 1) if x.dim() >= 3 else [-1]
        return [c for item in x for c in found(item)]

    channels = found(inputs)
    bad = [i for i, c in enumerate(channels) if c != expected]
    if not bad:
        return
    i = bad[0]
    where = ''
    if data_samples:  # views are listed view by view: image i is sample i % N
        i %= len(data_samples)
        path = data_samples[i].metainfo.get('img_path')
        where = f' ({path})' if path else ''
    raise ImageError(
        f'expected images with {expected} channels (the data preprocessor\'s mean/std), found '
        f'{channels[bad[0]]} in image {i} of the batch{where}; load images with '
        "LoadImageFromFile(color_type='color') or give mean/std one value per channel")
