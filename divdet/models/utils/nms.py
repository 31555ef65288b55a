"""Non-maximum suppression that lets the other members run meanwhile.

mmcv's ``nms`` (what ``test_cfg.nms = dict(type='nms')`` names) calls its C++
kernel through pybind11 without releasing the GIL, so the members' NMS calls run
one at a time even when the members run in threads (two calls on 4,000 boxes,
2-core CPU: 26 ms one after the other, 34 ms from two threads). torchvision's
``nms`` kernel is dispatched through torch, which releases the GIL, and computes
the same suppression (a box is dropped when its IoU with a kept, higher-scoring
box is > ``iou_threshold``; boxes as x1, y1, x2, y2 with width ``x2 - x1``).

:func:`nms` has mmcv's ``nms`` contract for tensors with ``offset=0`` (mmdet's
default) and is what :func:`resolve_nms_cfg` puts in place of ``type='nms'``;
mmcv's ``batched_nms`` accepts a callable as ``nms_cfg['type']``. Any other
``type`` is left to mmcv. Kept boxes are the same set as mmcv's; the order of
boxes with equal scores may differ (mmcv's sort is not stable, torchvision's is).
"""
from __future__ import annotations

from typing import Optional

import torch
from mmcv.ops import nms as mmcv_nms
from torch import Tensor
from torchvision.ops import nms as tv_nms


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, offset: int = 0,
        score_threshold: float = 0, max_num: int = -1) -> tuple[Tensor, Tensor]:
    """``mmcv.ops.nms`` computed by torchvision's kernel, which releases the GIL.

    Args and returns as ``mmcv.ops.nms``: ``(dets, inds)``, dets ``(K, 5)`` boxes
    with their score, inds the kept rows of ``boxes`` in descending score.
    ``offset=1`` (legacy ``x2 - x1 + 1`` widths) and numpy inputs go to mmcv.
    """
    if offset != 0 or not isinstance(boxes, Tensor) or not isinstance(scores, Tensor):
        return mmcv_nms(boxes, scores, iou_threshold, offset, score_threshold, max_num)
    if boxes.dim() != 2 or boxes.size(1) != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f'nms expects boxes (N, 4) and scores (N,), found '
                         f'{tuple(boxes.shape)} and {tuple(scores.shape)}')
    valid: Optional[Tensor] = None
    if score_threshold > 0:
        valid = torch.nonzero(scores > score_threshold, as_tuple=False).squeeze(1)
        boxes, scores = boxes[valid], scores[valid]
    inds = tv_nms(boxes, scores, float(iou_threshold))
    if max_num > 0:
        inds = inds[:max_num]
    dets = torch.cat((boxes[inds], scores[inds].reshape(-1, 1)), dim=1)
    return dets, (inds if valid is None else valid[inds])


def resolve_nms_cfg(cfg: Optional[dict]) -> Optional[dict]:
    """A copy of a test config whose ``nms`` of ``type='nms'`` runs :func:`nms`.

    ``cfg`` is a head's ``test_cfg`` (``nms=dict(type=..., iou_threshold=...)``);
    it is not changed. ``None`` and configs without an mmcv ``'nms'`` stay as given.
    """
    nms_cfg = cfg.get('nms') if cfg else None
    if (not isinstance(nms_cfg, dict) or nms_cfg.get('type', 'nms') != 'nms'
            or nms_cfg.get('offset', 0) != 0):
        return cfg
    out = cfg.copy()
    out['nms'] = dict(nms_cfg, type=nms)
    return out
