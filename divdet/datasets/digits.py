"""The handwritten digits that scikit-learn ships, written as an image-folder dataset.

1797 real 8x8 grey-level scans of handwritten digits (the UCI "optdigits" test
set, carried inside scikit-learn, so nothing is downloaded), upscaled and
written as PNG files in the folder-per-class layout that mmpretrain's
``CustomDataset`` reads::

    root/train/0/00000.png ... root/train/9/...
    root/val/0/...             root/val/9/...
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def make_digits_dataset(root: str | os.PathLike, size: int = 16, val_fraction: float = 0.2,
                        seed: int = 0) -> dict[str, Path]:
    """Write the digits as ``size`` x ``size`` RGB PNGs, split per class.

    Args:
        root: output folder.
        size: side of the written images (bilinear upscaling from 8x8).
        val_fraction: share of each class held out for validation.
        seed: seed of the split.

    Returns:
        split name -> its folder.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    root = Path(root)
    out = {split: root / split for split in ('train', 'val')}
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == label))
        n_val = int(round(len(idx) * val_fraction))
        for split, chosen in (('val', idx[:n_val]), ('train', idx[n_val:])):
            folder = out[split] / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                img = cv2.resize(images[i], (size, size), interpolation=cv2.INTER_LINEAR)
                if not cv2.imwrite(str(folder / f'{i:05d}.png'), cv2.merge([img] * 3)):
                    raise OSError(f'could not write {folder / f"{i:05d}.png"}')
    return out
