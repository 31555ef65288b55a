"""A small COCO-format detection dataset that divdet generates itself.

COCO cannot be downloaded here, so the embedded demo and the tests train on
*shapes*: real image files (JPEG) with filled circles, squares and triangles
of random colours, sizes (10% to 50% of the shorter image side) and positions on
noisy gradient backgrounds, some images holding no object at all, plus
``instances_{split}.json`` files in the COCO format that mmdet's
``CocoDataset`` and pycocotools read unchanged.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    t = np.linspace(0, 1, w)[None, :, None] if rng.uniform() < 0.5 else \
        np.linspace(0, 1, h)[:, None, None]
    img = c0 * (1 - t) + c1 * t + rng.normal(0, 12, size=(h, w, 3))
    return np.clip(np.broadcast_to(img, (h, w, 3)), 0, 255).astype(np.uint8)


def _iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _draw(img: np.ndarray, shape: int, box, color) -> None:
    x, y, s, _ = box
    if shape == 0:
        cv2.circle(img, (x + s // 2, y + s // 2), s // 2, color, -1, cv2.LINE_AA)
    elif shape == 1:
        cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), color, -1)
    else:
        pts = np.array([[x + s // 2, y], [x, y + s - 1], [x + s - 1, y + s - 1]], np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.part')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def make_shapes_dataset(root: str | os.PathLike, num_train: int = 400, num_val: int = 100,
                        size: int = 160, max_objects: int = 4, empty_fraction: float = 0.1,
                        seed: int = 0) -> dict[str, Path]:
    """Write the shapes dataset under ``root``.

    Layout (like ``data/coco``)::

        root/annotations/instances_train.json, instances_val.json
        root/train/000000.jpg ...   root/val/000000.jpg ...

    Args:
        root: output folder.
        num_train, num_val: number of images per split.
        size: nominal image side; each image is ``size`` +- 20% wide and tall.
        max_objects: at most this many objects per image.
        empty_fraction: share of images with no object.
        seed: random seed; the same arguments give the same files.

    Returns:
        split name -> path of its annotation file.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    out = {}
    ann_id = 1
    for split, count in (('train', num_train), ('val', num_val)):
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            h, w = (int(size * f) for f in rng.uniform(0.8, 1.2, size=2))
            img = _background(rng, h, w)
            n = 0 if rng.uniform() < empty_fraction else int(rng.integers(1, max_objects + 1))
            boxes = []
            for _ in range(n * 10):
                if len(boxes) == n:
                    break
                s = int(rng.uniform(0.1, 0.5) * min(h, w))
                x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
                box = (x, y, s, s)
                if all(_iou(box, b) < 0.2 for b, _ in boxes):
                    boxes.append((box, int(rng.integers(0, len(CLASSES)))))
            for box, label in boxes:
                _draw(img, label, box, tuple(int(c) for c in rng.uniform(0, 255, size=3)))
                annotations.append(dict(id=ann_id, image_id=i + 1, category_id=label + 1,
                                        bbox=[float(v) for v in box], area=float(box[2] * box[3]),
                                        iscrowd=0))
                ann_id += 1
            name = f'{i:06d}.jpg'
            if not cv2.imwrite(str(root / split / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                raise OSError(f'could not write {root / split / name}')
            images.append(dict(id=i + 1, file_name=name, width=w, height=h))
        coco = dict(images=images, annotations=annotations,
                    categories=[dict(id=k + 1, name=c) for k, c in enumerate(CLASSES)])
        out[split] = root / 'annotations' / f'instances_{split}.json'
        _write_atomic(out[split], json.dumps(coco))
    return out
