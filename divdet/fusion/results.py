"""Fusing the saved detections of any detectors (``tools/analysis_tools/fuse_results.py``).

Reads each model's detections from a COCO result JSON file (mmdet's
``--format-only`` output, or any list of ``{image_id, category_id, bbox: [x, y,
w, h], score}``) or a ``tools/test.py --out`` pickle (mmdet's dumped
``pred_instances``, boxes (x1, y1, x2, y2) and labels indexing the classes),
fuses them image by image with any registered fuser (:mod:`divdet.fusion.fusers`),
and evaluates every model and the fusion with pycocotools.

COCO boxes are (x, y, width, height); the fusers take (x1, y1, x2, y2), so the
boxes are converted on the way in and back on the way out (mmdet's own
``fuse_results.py`` hands COCO boxes to a WBF that expects corners).
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import os.path as osp
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.structures import InstanceData

from divdet.fusion.fusers import BaseFuser
from divdet.utils.errors import FusionInputError, MissingFileError

#: pycocotools' ``stats`` -> the metric keys mmdet's CocoMetric reports.
STATS_KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l')


@dataclass
class Detections:
    """One model's detections of a data set, grouped by image.

    ``boxes[img_id]`` (n, 4) float64 corners, ``scores[img_id]`` (n,),
    ``cat_ids[img_id]`` (n,) int64 COCO category ids.
    """

    name: str
    boxes: dict
    scores: dict
    cat_ids: dict

    def instances(self, img_id: int) -> InstanceData:
        n = len(self.scores.get(img_id, ()))
        return InstanceData(
            bboxes=torch.from_numpy(self.boxes.get(img_id, np.zeros((0, 4)))).reshape(n, 4),
            scores=torch.from_numpy(self.scores.get(img_id, np.zeros(0))),
            labels=torch.from_numpy(self.cat_ids.get(img_id, np.zeros(0, np.int64))))

    def num_boxes(self) -> int:
        return sum(len(s) for s in self.scores.values())


def _grouped(name, img_ids, boxes, scores, cat_ids) -> Detections:
    order = np.argsort(img_ids, kind='stable')
    img_ids, boxes, scores, cat_ids = img_ids[order], boxes[order], scores[order], cat_ids[order]
    keys, starts = np.unique(img_ids, return_index=True)
    ends = list(starts[1:]) + [len(img_ids)]
    out = Detections(name, {}, {}, {})
    for key, a, b in zip(keys.tolist(), starts, ends):
        out.boxes[key], out.scores[key], out.cat_ids[key] = boxes[a:b], scores[a:b], cat_ids[a:b]
    return out


def load_detections(path: str, coco, classes: Optional[Sequence[str]] = None) -> Detections:
    """One model's detections from a COCO result JSON file or a ``test.py --out`` pickle.

    Args:
        path: the file (``.json``: COCO results; ``.pkl``/``.pickle``: mmdet's dump).
        coco: the annotation file's ``COCO`` (image ids, sizes, categories).
        classes: for pickles, the class names that labels index (default: the
            annotation file's categories in file order, as mmdet's CocoDataset
            when its classes are all of them).

    Raises:
        MissingFileError, FusionInputError: naming the file and what is wrong
            (an unknown image or category id, a malformed or non-finite entry).
    """
    if not osp.isfile(path):
        raise MissingFileError(f'result file {path!r} not found')
    name = osp.basename(path)
    if path.endswith(('.pkl', '.pickle')):
        det = _from_pickle(path, coco, classes)
    else:
        det = _from_json(path)
    known_images = set(coco.getImgIds())
    unknown = sorted(set(det.scores) - known_images)
    if unknown:
        raise FusionInputError(f'{path}: {len(unknown)} image id(s) are not in the annotation '
                               f'file ({unknown[:5]}); the results must be of its images')
    known_cats = set(coco.getCatIds())
    used = set(itertools.chain.from_iterable(c.tolist() for c in det.cat_ids.values()))
    if used - known_cats:
        raise FusionInputError(f'{path}: category id(s) {sorted(used - known_cats)[:10]} are not '
                               f'in the annotation file (its ids: {sorted(known_cats)[:10]}...); '
                               'the results come from another category set')
    det.name = name
    return det


def _from_json(path: str) -> Detections:
    try:
        with open(path, encoding='utf-8') as f:
            entries = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FusionInputError(f'{path}: not a COCO result JSON file ({err})') from None
    if not isinstance(entries, list):
        raise FusionInputError(f'{path}: expected a list of detections '
                               f'{{image_id, category_id, bbox, score}}, found a '
                               f'{type(entries).__name__}')
    n = len(entries)
    img_ids, cat_ids = np.empty(n, np.int64), np.empty(n, np.int64)
    boxes, scores = np.empty((n, 4)), np.empty(n)
    for i, e in enumerate(entries):
        try:
            img_ids[i], cat_ids[i] = _integer(e['image_id']), _integer(e['category_id'])
            x, y, w, h = (_number(v) for v in e['bbox'])
            boxes[i] = (x, y, x + w, y + h)
            scores[i] = _number(e['score'])
        except (KeyError, TypeError, ValueError):
            raise FusionInputError(f'{path}: entry {i} is not a detection {{image_id, '
                                   'category_id (integers), bbox: [x, y, w, h], score '
                                   f'(numbers)}}: {e!r}') from None
        if np.isfinite((w, h, scores[i])).all() and (w < 0 or h < 0 or not 0 <= scores[i] <= 1):
            raise FusionInputError(f'{path}: entry {i} (image {img_ids[i]}) has a negative '
                                   'width or height or a score outside [0, 1]: '
                                   f'bbox {e["bbox"]!r}, score {e["score"]!r}')
    _check_finite(path, boxes, scores, img_ids)
    return _grouped(osp.basename(path), img_ids, boxes, scores, cat_ids)


def _integer(value) -> int:
    """An id: an integer (not a bool, not a float such as 1.5)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(value)
    return int(value)


def _number(value) -> float:
    """A coordinate or score: an int or float (not a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(value)
    return float(value)


def label_categories(path: str, coco, classes: Optional[Sequence[str]],
                     saved: Optional[Sequence[str]]) -> list[int]:
    """The category id of each label of a pickle, matched by class name.

    The labels index the classes of the config that made the pickle
    (``tools/test.py --out`` stores them in every sample); ``--classes`` gives
    them for pickles without; else the annotation file's categories in file
    order (what mmdet's ``CocoDataset`` uses when its classes are all of them).

    Raises:
        FusionInputError: ``--classes`` disagrees with the pickle's classes, or
            a class is not a category of the annotation file.
    """
    if saved is not None and classes and tuple(classes) != tuple(saved):
        raise FusionInputError(f'{path}: its labels index the classes {tuple(saved)} (saved by '
                               f'tools/test.py --out), --classes gives {tuple(classes)}')
    names = saved if saved is not None else classes
    if not names:
        return [c['id'] for c in coco.dataset['categories']]
    by_name = {c['name']: c['id'] for c in coco.dataset['categories']}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise FusionInputError(f'{path}: the classes {missing} are not categories of the '
                               f'annotation file ({sorted(by_name)})')
    return [by_name[n] for n in names]


def _check_same_image(path: str, coco, index: int, sample: dict, img: int) -> None:
    """A pickle's sample must be the annotation file's image of its id (same file
    name and size), not an image of another split that shares the id."""
    info = coco.imgs.get(img)
    if info is None:
        return  # reported with the other unknown ids
    img_path, shape = sample.get('img_path'), sample.get('ori_shape')
    if img_path and info.get('file_name') and \
            osp.basename(str(img_path)) != osp.basename(str(info['file_name'])):
        raise FusionInputError(f'{path}: sample {index} (image id {img}) is {img_path!r}, the '
                               f"annotation file's image {img} is {info['file_name']!r}: the "
                               'results are of another split or data set')
    if shape is not None and 'height' in info and \
            tuple(int(v) for v in tuple(shape)[:2]) != (info['height'], info['width']):
        raise FusionInputError(f'{path}: sample {index} (image id {img}) has size '
                               f'{tuple(shape)[:2]}, the annotation file says '
                               f"{(info['height'], info['width'])}: the results are of another "
                               'split or data set')


def _from_pickle(path: str, coco, classes) -> Detections:
    import mmengine
    try:
        samples = mmengine.load(path)
    except Exception as err:  # noqa: BLE001 (any unpickling failure is a bad file)
        raise FusionInputError(f'{path}: not a tools/test.py --out pickle ({err})') from None
    if not isinstance(samples, list):
        raise FusionInputError(f'{path}: expected a list of samples (tools/test.py --out), '
                               f'found a {type(samples).__name__}')
    saved = samples[0].get('classes') if samples and isinstance(samples[0], dict) else None
    cat_of_label = label_categories(path, coco, classes, saved)
    parts = []
    for i, s in enumerate(samples):
        try:
            pred = s['pred_instances']
            b = np.asarray(pred['bboxes'], dtype=np.float64).reshape(-1, 4)
            sc = np.asarray(pred['scores'], dtype=np.float64).reshape(-1)
            lab = np.asarray(pred['labels'], dtype=np.int64).reshape(-1)
            img = int(s['img_id'])
        except (KeyError, TypeError, ValueError):
            raise FusionInputError(f'{path}: sample {i} has no pred_instances with bboxes, '
                                   'scores and labels, or no img_id') from None
        _check_same_image(path, coco, i, s, img)
        if len(lab) and (lab.min() < 0 or lab.max() >= len(cat_of_label)):
            raise FusionInputError(f'{path}: image {img} has label {int(lab.max())}, but there '
                                   f'are {len(cat_of_label)} classes; the results come from '
                                   'another category set (or give --classes)')
        parts.append((np.full(len(sc), img), b, sc, np.asarray(cat_of_label)[lab]))
    img_ids, boxes, scores, cat_ids = (np.concatenate([p[k] for p in parts]) if parts else
                                       np.zeros((0, 4) if k == 1 else 0) for k in range(4))
    _check_finite(path, boxes, scores, img_ids)
    return _grouped(osp.basename(path), img_ids.astype(np.int64), boxes, scores,
                    cat_ids.astype(np.int64))


def _check_finite(path, boxes, scores, img_ids) -> None:
    bad = ~(np.isfinite(boxes).all(1) & np.isfinite(scores))
    if bad.any():
        raise FusionInputError(f'{path}: {int(bad.sum())} detections have NaN or infinite '
                               f'boxes or scores (first in image {int(img_ids[bad][0])})')


def fuse_detections(models: Sequence[Detections], fuser: BaseFuser, coco,
                    img_ids: Optional[Sequence[int]] = None) -> Detections:
    """The fusion of ``models`` on ``img_ids`` (default: every image of ``coco``), in
    one call of the fuser (WBF: one C call for the whole set on the CPU)."""
    img_ids = sorted(coco.getImgIds()) if img_ids is None else list(img_ids)
    shapes = [(coco.imgs[i]['height'], coco.imgs[i]['width']) for i in img_ids]
    results = [[m.instances(i) for m in models] for i in img_ids]
    try:
        fused = fuser.fuse_batch(results, shapes)
    except FusionInputError as err:  # name the models, not their positions
        names = ', '.join(f'{t}: {m.name}' for t, m in enumerate(models))
        raise FusionInputError(f'{err} (models {names})') from None
    out = Detections('fused', {}, {}, {})
    for i, f in zip(img_ids, fused):
        if len(f):
            out.boxes[i] = f.bboxes.double().numpy()
            out.scores[i] = f.scores.double().numpy()
            out.cat_ids[i] = f.labels.long().numpy()
    return out


def to_coco_results(det: Detections) -> list[dict]:
    """COCO result entries (boxes back to [x, y, w, h])."""
    out = []
    for img_id in sorted(det.scores):
        for b, s, c in zip(det.boxes[img_id].tolist(), det.scores[img_id].tolist(),
                           det.cat_ids[img_id].tolist()):
            out.append(dict(image_id=img_id, category_id=int(c),
                            bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]], score=s))
    return out


def evaluate(det: Detections, coco, img_ids: Optional[Sequence[int]] = None) -> dict:
    """pycocotools COCO box AP of ``det`` (on ``img_ids``, default all), under
    mmdet's CocoMetric keys (``bbox_mAP`` ...); -1 where pycocotools has no value."""
    from pycocotools.cocoeval import COCOeval
    results = to_coco_results(det)
    if img_ids is not None:
        keep = set(img_ids)
        results = [r for r in results if r['image_id'] in keep]
    if not results:
        return {k: 0.0 for k in STATS_KEYS}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        evaluator = COCOeval(coco, coco.loadRes(results), 'bbox')
        if img_ids is not None:
            evaluator.params.imgIds = sorted(img_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {k: float(v) for k, v in zip(STATS_KEYS, evaluator.stats[:6])}


def weight_grid(num_models: int, values: Sequence[float]) -> list[tuple[float, ...]]:
    """Every combination of ``values`` per model, one per ratio (``(2, 2)`` is ``(1, 1)``)."""
    seen, grid = set(), []
    for combo in itertools.product(values, repeat=num_models):
        top = max(combo)
        key = tuple(round(c / top, 9) for c in combo)
        if key not in seen:
            seen.add(key)
            grid.append(tuple(float(c) for c in combo))
    return grid


def tune(models, fuser_cfg: dict, coco, weights_values, iou_values, build) -> dict:
    """Search member weights (and ``iou_thr`` where the fuser has one) on half of
    the images (even positions in id order), report the AP on both halves.

    Returns:
        dict(best=dict(weights, iou_thr, tune_mAP, held_out_mAP), trials=[...] best first).
    """
    ids = sorted(coco.getImgIds())
    if len(ids) < 2:
        raise FusionInputError(f'tuning needs at least 2 images (one half to choose on, the '
                               f'other to report), the annotation file has {len(ids)}')
    tune_ids, held_out = ids[0::2], ids[1::2]
    has_iou = 'iou_thr' in build(dict(fuser_cfg)).__dict__
    trials = []
    for weights in weight_grid(len(models), weights_values):
        for iou in (iou_values if has_iou else [None]):
            cfg = dict(fuser_cfg, weights=list(weights))
            if iou is not None:
                cfg['iou_thr'] = iou
            fused = fuse_detections(models, build(cfg), coco, tune_ids)
            trials.append(dict(weights=list(weights), iou_thr=iou,
                               tune_mAP=evaluate(fused, coco, tune_ids)['bbox_mAP']))
    trials.sort(key=lambda t: -t['tune_mAP'])
    best = dict(trials[0])
    cfg = dict(fuser_cfg, weights=best['weights'])
    if best['iou_thr'] is not None:
        cfg['iou_thr'] = best['iou_thr']
    best['held_out_mAP'] = evaluate(fuse_detections(models, build(cfg), coco, held_out), coco,
                                    held_out)['bbox_mAP']
    return dict(best=best, trials=trials, tune_images=len(tune_ids),
                held_out_images=len(held_out))


__all__ = ['Detections', 'load_detections', 'fuse_detections', 'to_coco_results', 'evaluate',
           'weight_grid', 'tune', 'STATS_KEYS']
