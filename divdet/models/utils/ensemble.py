"""Merging the members' detections: Weighted Boxes Fusion, NMS over the union, concat.

:func:`weighted_boxes_fusion` is a torch port of ``ensemble_boxes.weighted_boxes_fusion``
(ZFTurbo's ensemble-boxes 1.0.9, the algorithm of Solovyev et al., "Weighted boxes
fusion", Image Vis. Comput. 2021): same pre-filtering (score threshold, coordinate
swap and clipping to [0, 1], zero-area boxes dropped), same greedy clustering in
order of weighted score, same fused coordinates and confidence rules. It runs on the
tensors' own device and returns integer labels; bad input raises ``ValueError``
instead of calling ``exit()``.

Clustering is sequential by nature (a box joins the cluster whose *current* fused
box overlaps it most), so the port steps through the boxes in score order but
processes every label at once.

Ties: boxes of equal weighted score are visited in reverse input order, which is
what numpy's ``argsort()[::-1]`` does for up to 16 boxes of a label; for more tied
boxes numpy's unstable sort may visit them in another order.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmcv.ops import batched_nms
from mmengine.structures import InstanceData
from torch import Tensor

CONF_TYPES = ('avg', 'max', 'box_and_model_avg', 'absent_model_aware_avg')


def _pairwise_iou(clusters: Tensor, box: Tensor) -> Tensor:
    """IoU of (G, K, 4) cluster boxes with one (G, 4) box per group -> (G, K)."""
    box = box[:, None]
    lt = torch.maximum(clusters[..., :2], box[..., :2])
    rb = torch.minimum(clusters[..., 2:], box[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_c = (clusters[..., 2] - clusters[..., 0]) * (clusters[..., 3] - clusters[..., 1])
    area_b = (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])
    return inter / (area_c + area_b - inter)


def weighted_boxes_fusion(boxes_list: Sequence[Tensor], scores_list: Sequence[Tensor],
                          labels_list: Sequence[Tensor], weights: Optional[Sequence[float]] = None,
                          iou_thr: float = 0.55, skip_box_thr: float = 0.0,
                          conf_type: str = 'avg', allows_overflow: bool = False
                          ) -> tuple[Tensor, Tensor, Tensor]:
    """Fuse the boxes of several models (members) for one image.

    Args:
        boxes_list: one (n_i, 4) tensor per model, (x1, y1, x2, y2) normalised
            to [0, 1].
        scores_list: one (n_i,) tensor per model.
        labels_list: one (n_i,) integer tensor per model.
        weights: one weight per model (default all 1).
        iou_thr: a box joins a cluster whose fused box overlaps it by more.
        skip_box_thr: boxes with a lower score are dropped first.
        conf_type: ``'avg'``, ``'max'``, ``'box_and_model_avg'`` or
            ``'absent_model_aware_avg'``.
        allows_overflow: let ``'avg'`` confidences exceed 1.

    Returns:
        boxes (m, 4), scores (m,), labels (m,) sorted by descending score,
        computed in float64 on the input device.

    Raises:
        ValueError: mismatched lengths, wrong number of weights or unknown
            ``conf_type``.
    """
    num_models = len(boxes_list)
    if not (len(scores_list) == len(labels_list) == num_models):
        raise ValueError(f'need one boxes/scores/labels tensor per model, found '
                         f'{num_models}/{len(scores_list)}/{len(labels_list)}')
    if conf_type not in CONF_TYPES:
        raise ValueError(f'conf_type must be one of {CONF_TYPES}, found {conf_type!r}')
    if weights is not None and len(weights) != num_models:
        raise ValueError(f'need one weight per model ({num_models}), found {len(weights)}')
    device = boxes_list[0].device if num_models else torch.device('cpu')
    dtype = torch.float64
    w = torch.ones(num_models, dtype=dtype, device=device) if weights is None else \
        torch.as_tensor(weights, dtype=dtype, device=device)
    for t, (b, s, lab) in enumerate(zip(boxes_list, scores_list, labels_list)):
        if not (b.reshape(-1, 4).shape[0] == s.numel() == lab.numel()):
            raise ValueError(f'model {t}: {b.reshape(-1, 4).shape[0]} boxes, {s.numel()} scores '
                             f'and {lab.numel()} labels; they must match')
    empty = (torch.zeros((0, 4), dtype=dtype, device=device),
             torch.zeros((0, ), dtype=dtype, device=device),
             torch.zeros((0, ), dtype=torch.long, device=device))
    if num_models == 0:
        return empty

    # -- prefilter_boxes ------------------------------------------------------------
    boxes = torch.cat([b.reshape(-1, 4).to(dtype) for b in boxes_list])
    scores = torch.cat([s.reshape(-1).to(dtype) for s in scores_list])
    labels = torch.cat([lab.reshape(-1).long() for lab in labels_list])
    model = torch.cat([torch.full((len(s.reshape(-1)), ), t, device=device)
                       for t, s in enumerate(scores_list)])
    x1 = torch.minimum(boxes[:, 0], boxes[:, 2]).clamp(0, 1)
    x2 = torch.maximum(boxes[:, 0], boxes[:, 2]).clamp(0, 1)
    y1 = torch.minimum(boxes[:, 1], boxes[:, 3]).clamp(0, 1)
    y2 = torch.maximum(boxes[:, 1], boxes[:, 3]).clamp(0, 1)
    keep = (scores >= skip_box_thr) & ((x2 - x1) * (y2 - y1) != 0)
    boxes = torch.stack([x1, y1, x2, y2], 1)[keep]
    model, labels = model[keep], labels[keep]
    wscore = scores[keep] * w[model]
    if boxes.shape[0] == 0:
        return empty

    # Group by label in order of first appearance; within a group, descending
    # weighted score with ties in reverse input order (numpy argsort()[::-1]).
    uniq, group = _unique_in_order(labels)
    n = boxes.shape[0]
    order = torch.arange(n - 1, -1, -1, device=device)
    order = order[torch.sort(wscore[order], descending=True, stable=True).indices]
    order = order[torch.sort(group[order], stable=True).indices]
    g_sorted = group[order]
    num_groups = len(uniq)
    counts = torch.bincount(g_sorted, minlength=num_groups)
    steps = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(n, device=device) - starts[g_sorted]
    slot = torch.full((num_groups, steps), -1, dtype=torch.long, device=device)
    slot[g_sorted, pos] = order

    # -- greedy clustering, every label group in parallel --------------------------
    fused = torch.zeros((num_groups, steps, 4), dtype=dtype, device=device)
    wsum_xy = torch.zeros_like(fused)
    conf_sum = torch.zeros((num_groups, steps), dtype=dtype, device=device)
    conf_max = torch.zeros_like(conf_sum)
    weight_sum = torch.zeros_like(conf_sum)
    count = torch.zeros_like(conf_sum)
    members = torch.zeros((num_groups, steps, num_models), dtype=torch.bool, device=device)
    num_clusters = torch.zeros(num_groups, dtype=torch.long, device=device)
    cluster_ids = torch.arange(steps, device=device)
    rows = torch.arange(num_groups, device=device)
    for j in range(steps):
        idx = slot[:, j]
        active = idx >= 0
        safe = idx.clamp(min=0)
        b, s, t = boxes[safe], wscore[safe], model[safe]
        iou = _pairwise_iou(fused, b)
        iou = torch.where(cluster_ids[None] < num_clusters[:, None], iou, iou.new_tensor(-1.0))
        best = torch.argmax(iou, 1)
        best_iou = iou[rows, best]
        matched = active & (best_iou > iou_thr)
        k = torch.where(matched, best, num_clusters)
        r, k = rows[active], k[active]
        b, s, t = b[active], s[active], t[active]
        wsum_xy[r, k] += s[:, None] * b
        conf_sum[r, k] += s
        conf_max[r, k] = torch.maximum(conf_max[r, k], s)
        weight_sum[r, k] += w[t]
        count[r, k] += 1
        members[r, k, t] = True
        is_new = ~matched[active]
        # A new cluster keeps its box as is; a grown one gets the
        # confidence-weighted mean of its boxes (get_weighted_box).
        fused[r, k] = torch.where(is_new[:, None], b, wsum_xy[r, k] / conf_sum[r, k, None])
        num_clusters += (active & ~matched).long()

    valid = cluster_ids[None] < num_clusters[:, None]
    if conf_type == 'max':
        conf = conf_max / w.max()
    else:
        conf = conf_sum / count.clamp(min=1)
        if conf_type == 'box_and_model_avg':
            conf = conf * count / weight_sum.clamp(min=1e-12)
            conf = conf * (members.to(dtype) * w).sum(-1) / w.sum()
        elif conf_type == 'absent_model_aware_avg':
            absent = ((~members).to(dtype) * w).sum(-1)
            conf = conf * count / (weight_sum + absent)
        elif not allows_overflow:
            conf = conf * count.clamp(max=num_models) / w.sum()
        else:
            conf = conf * count / w.sum()
    out_boxes, out_scores = fused[valid], conf[valid]
    out_labels = uniq[rows[:, None].expand(-1, steps)[valid]]
    # overall_boxes[:, 1].argsort()[::-1]: descending, ties in reverse order.
    rev = torch.arange(len(out_scores) - 1, -1, -1, device=device)
    final = rev[torch.sort(out_scores[rev], descending=True, stable=True).indices]
    return out_boxes[final], out_scores[final], out_labels[final]


def _unique_in_order(values: Tensor) -> tuple[Tensor, Tensor]:
    """Unique values in order of first appearance, and each value's index among them."""
    uniq, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((len(uniq), ), len(values), dtype=torch.long, device=values.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(values), device=values.device),
                          reduce='amin')
    order = torch.argsort(first)
    rank = torch.argsort(order)
    return uniq[order], rank[inverse]


def fuse_member_results(results: Sequence[InstanceData], img_shape: Sequence[int],
                        ensemble_cfg: dict, max_per_img: int) -> InstanceData:
    """Merge one image's detections from S members.

    Args:
        results: one ``InstanceData`` (bboxes (n, 4) in pixels, scores (n,),
            labels (n,)) per member.
        img_shape: (height, width) the boxes live in, used to normalise for WBF.
        ensemble_cfg: ``type`` is ``'wbf'`` (default; ``iou_thr``,
            ``skip_box_thr``, ``conf_type``, ``weights``), ``'nms'`` (NMS over
            the union; ``iou_thr``) or ``'concat'``.
        max_per_img: at most this many boxes are kept, highest scores first.

    Returns:
        The fused ``InstanceData`` with bboxes, scores and labels.
    """
    cfg = dict(ensemble_cfg or {})
    kind = cfg.pop('type', 'wbf')
    if len(results) == 1:
        fused = results[0]
    elif kind == 'wbf':
        h, w = float(img_shape[0]), float(img_shape[1])
        scale = results[0].bboxes.new_tensor([w, h, w, h])
        boxes, scores, labels = weighted_boxes_fusion(
            [r.bboxes / scale for r in results], [r.scores for r in results],
            [r.labels for r in results], weights=cfg.get('weights'),
            iou_thr=cfg.get('iou_thr', 0.55), skip_box_thr=cfg.get('skip_box_thr', 0.0),
            conf_type=cfg.get('conf_type', 'avg'))
        fused = InstanceData(bboxes=(boxes * scale.to(boxes.dtype)).to(results[0].bboxes.dtype),
                             scores=scores.to(results[0].scores.dtype), labels=labels)
    elif kind in ('nms', 'concat'):
        union = InstanceData.cat(list(results))
        if kind == 'nms' and len(union) > 0:
            _, keep = batched_nms(union.bboxes, union.scores, union.labels,
                                  dict(type='nms', iou_threshold=cfg.get('iou_thr', 0.5)))
            union = union[keep]
        fused = union
    else:
        raise ValueError(f"ensemble type must be 'wbf', 'nms' or 'concat', found {kind!r}")
    if len(fused) > max_per_img:
        fused = fused[fused.scores.topk(max_per_img).indices]
    return fused
