"""A small COCO-format detection dataset that divdet generates itself.

COCO cannot be downloaded here, so the embedded demo and the tests train on
*shapes*: real image files (JPEG) plus ``instances_{split}.json`` files in the
COCO format that mmdet's ``CocoDataset`` and pycocotools read unchanged. Two
presets:

- ``'quick'`` (:func:`make_shapes_dataset`, the demo): filled circles, squares
  and triangles of random colours, sizes (10% to 50% of the shorter image side)
  and positions on noisy gradient backgrounds, some images holding no object.
- ``'hard'`` (:func:`make_hard_shapes_dataset`, for measuring differences
  between models): 8 classes, four shapes (circle, square, triangle, diamond)
  each filled or as an outline, so shape *and* texture decide the class; up to
  8 objects per image, down to 7% of the image side, allowed to overlap (later
  objects partly hide earlier ones; boxes are the full extent); unannotated
  clutter (thin lines and arcs, low-contrast blobs) and low-contrast objects.
  Colour never decides a class, so photometric augmentation keeps labels valid.

Both are deterministic for a seed and need nothing from outside.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from divdet.utils.errors import OutputError
from divdet.utils.files import atomic_write, check_output_dir

CLASSES = ('circle', 'square', 'triangle')
#: Classes of the 'hard' preset: shape x texture (filled or outline).
HARD_SHAPES = ('circle', 'square', 'triangle', 'diamond')
HARD_CLASSES = tuple(f'{texture}-{shape}' for shape in HARD_SHAPES
                     for texture in ('filled', 'outline'))


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


def _draw(img: np.ndarray, shape: int, box, color, thickness: int = -1) -> None:
    """Draw shape 0-3 (circle, square, triangle, diamond) filling ``box``; a
    positive ``thickness`` draws the outline only."""
    x, y, s, _ = box
    if shape == 0:
        r = s // 2 if thickness < 0 else max(1, s // 2 - thickness // 2)
        cv2.circle(img, (x + s // 2, y + s // 2), r, color, thickness, cv2.LINE_AA)
        return
    if shape == 1 and thickness < 0:
        cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), color, -1)
        return
    if shape == 1:
        pts = [[x, y], [x + s - 1, y], [x + s - 1, y + s - 1], [x, y + s - 1]]
    elif shape == 2:
        pts = [[x + s // 2, y], [x, y + s - 1], [x + s - 1, y + s - 1]]
    else:
        pts = [[x + s // 2, y], [x + s - 1, y + s // 2], [x + s // 2, y + s - 1], [x, y + s // 2]]
    pts = np.array(pts, np.int32)
    if thickness < 0:
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    else:
        inset = thickness // 2  # keep the stroke inside the box
        centre = pts.mean(0)
        pts = np.round(centre + (pts - centre) * (1 - 2 * inset / max(s, 1))).astype(np.int32)
        cv2.polylines(img, [pts], True, color, thickness, cv2.LINE_AA)


def _clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Unannotated distractors: thin lines, arcs and low-contrast blobs."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(2, 7))):
        color = tuple(int(c) for c in rng.uniform(0, 255, size=3))
        kind = rng.uniform()
        if kind < 0.45:
            p0, p1 = rng.integers(0, [w, h], size=(2, 2))
            cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), color,
                     int(rng.integers(1, 3)), cv2.LINE_AA)
        elif kind < 0.8:
            c = tuple(int(v) for v in rng.integers(0, [w, h]))
            axes = tuple(int(v) for v in rng.integers(5, max(6, min(h, w) // 3), size=2))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), start,
                        start + float(rng.uniform(60, 200)), color, 1, cv2.LINE_AA)
        else:  # a soft blob a little lighter or darker than the background
            c = tuple(int(v) for v in rng.integers(0, [w, h]))
            blob = np.zeros_like(img)
            cv2.circle(blob, c, int(rng.integers(6, max(7, min(h, w) // 4))),
                       (255, 255, 255), -1)
            blob = cv2.GaussianBlur(blob, (0, 0), 4).astype(np.float32) / 255
            shift = float(rng.uniform(-35, 35))
            img[:] = np.clip(img + blob * shift, 0, 255).astype(np.uint8)


def _object_color(rng: np.random.Generator, img: np.ndarray, box) -> tuple:
    """A random colour; one object in four is only ~40-70 grey levels off its
    background (low contrast)."""
    color = rng.uniform(0, 255, size=3)
    if rng.uniform() < 0.25:
        x, y, s, _ = box
        mean = img[y:y + s, x:x + s].reshape(-1, 3).mean(0)
        color = np.clip(mean + rng.choice([-1, 1], size=3) * rng.uniform(40, 70, size=3), 0, 255)
    return tuple(int(c) for c in color)


def _place(rng: np.random.Generator, h: int, w: int, n: int, sizes: tuple[float, float],
           max_iou: float, num_classes: int) -> list:
    """Up to ``n`` square boxes (x, y, s, s) with labels, overlapping each other
    by less than ``max_iou``."""
    boxes = []
    for _ in range(n * 10):
        if len(boxes) == n:
            break
        s = int(rng.uniform(*sizes) * min(h, w))
        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        box = (x, y, s, s)
        if all(_iou(box, b) < max_iou for b, _ in boxes):
            boxes.append((box, int(rng.integers(0, num_classes))))
    return boxes


def _quick_image(rng: np.random.Generator, h: int, w: int, count) -> tuple:
    img = _background(rng, h, w)
    n = count()
    boxes = _place(rng, h, w, n, (0.1, 0.5), 0.2, len(CLASSES))
    for box, label in boxes:
        _draw(img, label, box, tuple(int(c) for c in rng.uniform(0, 255, size=3)))
    return img, boxes


def _hard_image(rng: np.random.Generator, h: int, w: int, count) -> tuple:
    img = _background(rng, h, w)
    _clutter(rng, img)
    n = count()
    boxes = _place(rng, h, w, n, (0.07, 0.4), 0.35, len(HARD_CLASSES))
    for box, label in boxes:  # later objects are drawn over earlier ones
        shape, outline = divmod(label, 2)
        _draw(img, shape, box, _object_color(rng, img, box),
              max(2, box[2] // 7) if outline else -1)
    return img, boxes


def _write_dataset(root, classes: tuple, make_image, num_train: int, num_val: int, size: int,
                   max_objects: int, empty_fraction: float, seed: int) -> dict[str, Path]:
    """Write the dataset; a folder that cannot be written is one :class:`OutputError`."""
    check_output_dir(root, 'the dataset folder')
    try:
        return _write_files(root, classes, make_image, num_train, num_val, size, max_objects,
                            empty_fraction, seed)
    except OSError as err:
        raise OutputError(f'the dataset folder {str(root)!r} could not be written '
                          f'({err.strerror or err})') from None


def _write_files(root, classes: tuple, make_image, num_train: int, num_val: int, size: int,
                 max_objects: int, empty_fraction: float, seed: int) -> dict[str, Path]:
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
            img, boxes = make_image(rng, h, w, lambda: 0 if rng.uniform() < empty_fraction
                                    else int(rng.integers(1, max_objects + 1)))
            for box, label in boxes:
                annotations.append(dict(id=ann_id, image_id=i + 1, category_id=label + 1,
                                        bbox=[float(v) for v in box], area=float(box[2] * box[3]),
                                        iscrowd=0))
                ann_id += 1
            name = f'{i:06d}.jpg'
            ok, encoded = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise OSError(f'could not encode {root / split / name}')
            atomic_write(encoded.tobytes(), root / split / name)
            images.append(dict(id=i + 1, file_name=name, width=w, height=h))
        coco = dict(images=images, annotations=annotations,
                    categories=[dict(id=k + 1, name=c, supercategory='shape')
                                for k, c in enumerate(classes)])
        out[split] = root / 'annotations' / f'instances_{split}.json'
        atomic_write(json.dumps(coco).encode(), out[split])
    return out


def make_shapes_dataset(root: str | os.PathLike, num_train: int = 400, num_val: int = 100,
                        size: int = 160, max_objects: int = 4, empty_fraction: float = 0.1,
                        seed: int = 0) -> dict[str, Path]:
    """Write the shapes dataset ('quick' preset) under ``root``.

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
    return _write_dataset(root, CLASSES, _quick_image, num_train, num_val, size, max_objects,
                          empty_fraction, seed)


def make_hard_shapes_dataset(root: str | os.PathLike, num_train: int = 500,
                             num_val: int = 150, size: int = 128, max_objects: int = 8,
                             empty_fraction: float = 0.05, seed: int = 0) -> dict[str, Path]:
    """Write the 'hard' shapes preset (see the module doc) under ``root``.

    Same layout and arguments as :func:`make_shapes_dataset`; categories are
    :data:`HARD_CLASSES`. Objects are 7% to 40% of the shorter image side; a
    new object may overlap each earlier one up to an IoU of 0.35 and is drawn
    over them.
    """
    return _write_dataset(root, HARD_CLASSES, _hard_image, num_train, num_val, size,
                          max_objects, empty_fraction, seed)
