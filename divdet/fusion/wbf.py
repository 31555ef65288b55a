"""Weighted Boxes Fusion as a torch operator (C++ on the CPU, batched torch code
elsewhere), equal to ensemble-boxes.

:func:`weighted_boxes_fusion` is a torch port of ``ensemble_boxes.weighted_boxes_fusion``
(ZFTurbo's ensemble-boxes 1.0.9, the algorithm of Solovyev et al., "Weighted boxes
fusion", Image Vis. Comput. 2021): same pre-filtering (score threshold, coordinate
swap and clipping to [0, 1], zero-area boxes dropped), same greedy clustering in
order of weighted score, same fused coordinates and confidence rules. It runs on the
tensors' own device and returns integer labels; bad input raises ``ValueError``
instead of calling ``exit()``.

Clustering is sequential by nature (a box joins the cluster whose *current* fused
box overlaps it most). The fusion is the torch operator
``torch.ops.divdet.weighted_boxes_fusion`` (:data:`SCHEMA`): for CPU tensors its
kernel is C++ (``csrc/wbf_kernel.cpp``, built by ``setup.py``; one call per
batch, since a torch op costs microseconds and a large label group needs
hundreds of dependent steps); for other devices (GPU) it is the batched torch
code below: filtering, grouping by image and label, ordering and the clusters'
scores at once, and the loop one step per box of the largest group with every
(image, label) group processed together. Both check their inputs (dtypes,
shapes), do the same float64 operations in the same order and agree bitwise with
unit model weights (tested); a fake kernel lets ``torch.compile`` trace calls of
the operator. ``DIVDET_WBF_KERNEL=torch`` runs the torch code on the CPU too.

Ties: boxes of equal weighted score are visited in reverse input order, which is
what numpy's ``argsort()[::-1]`` does for up to 16 boxes of a label; for more tied
boxes numpy's unstable sort may visit them in another order.
"""
from __future__ import annotations

import importlib.util
import math
import os
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor

from divdet.utils.errors import FusionInputError

CONF_TYPES = ('avg', 'max', 'box_and_model_avg', 'absent_model_aware_avg')


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
    return batched_weighted_boxes_fusion([list(boxes_list)], [list(scores_list)],
                                         [list(labels_list)], weights, iou_thr, skip_box_thr,
                                         conf_type, allows_overflow)[0]


def check_fusion_input(boxes: Sequence[Sequence[Tensor]], scores: Sequence[Sequence[Tensor]],
                       weights: Optional[Sequence[float]] = None) -> None:
    """Refuse weights that are not positive and finite, and non-finite boxes or scores.

    ensemble-boxes returns NaN boxes for a zero weight (its issue #44) and lets
    a NaN coordinate through into the fused box; here both are errors. One
    ``isfinite`` over all the values; the offending model and image are only
    looked up when something is wrong.

    Raises:
        FusionInputError: naming the model (member) and image.
    """
    if weights is not None:
        for t, w in enumerate(weights):
            w = float(w)
            if not (math.isfinite(w) and w > 0):
                raise FusionInputError(f'fusion weight of model (member) {t} is {w!r}; every '
                                       'weight must be a positive finite number')
    # (n, 4) boxes and (n,) scores as they come (no operator per tensor), else flattened
    def is_rows(v):
        return v.dim() == 2 and v.shape[1] == 4
    rows = [v for image in boxes for v in image if is_rows(v)]
    values = [v if v.dim() == 1 else v.reshape(-1) for part in (boxes, scores)
              for image in part for v in image if part is scores or not is_rows(v)]
    if not values and not rows:
        return
    if (not rows or bool(torch.isfinite(torch.cat(rows)).all())) and (
            not values or bool(torch.isfinite(torch.cat(values)).all())):
        return
    for j, image in enumerate(boxes):
        for t in range(len(image)):
            for what, v in (('boxes', boxes[j][t]), ('scores', scores[j][t])):
                bad = ~torch.isfinite(v.reshape(-1))
                if bool(bad.any()):
                    raise FusionInputError(
                        f'image {j}, model (member) {t}: {int(bad.sum())} {what} values are '
                        'NaN or infinite; detections to fuse must be finite')


def batched_weighted_boxes_fusion(
        boxes: Sequence[Sequence[Tensor]], scores: Sequence[Sequence[Tensor]],
        labels: Sequence[Sequence[Tensor]], weights: Optional[Sequence[float]] = None,
        iou_thr: float = 0.55, skip_box_thr: float = 0.0, conf_type: str = 'avg',
        allows_overflow: bool = False) -> list[tuple[Tensor, Tensor, Tensor]]:
    """:func:`weighted_boxes_fusion` for a batch of images in one pass.

    Every (image, label) group is clustered in parallel, so the sequential
    part costs one step per box of the largest group, not per box.

    Args:
        boxes: ``boxes[j][t]``: image j's (n, 4) boxes from model t, normalised.
        scores: ``scores[j][t]``: (n,) scores.
        labels: ``labels[j][t]``: (n,) labels.
        weights, iou_thr, skip_box_thr, conf_type, allows_overflow: as in
            :func:`weighted_boxes_fusion`.

    Returns:
        One (boxes, scores, labels) per image, as :func:`weighted_boxes_fusion`.
    """
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(f'need boxes, scores and labels for every image, found '
                         f'{len(boxes)}/{len(scores)}/{len(labels)}')
    if conf_type not in CONF_TYPES:
        raise ValueError(f'conf_type must be one of {CONF_TYPES}, found {conf_type!r}')
    num_images = len(boxes)
    num_models = len(boxes[0]) if num_images else 0
    for j in range(num_images):
        if not (len(boxes[j]) == len(scores[j]) == len(labels[j]) == num_models):
            raise ValueError(f'image {j}: need one boxes/scores/labels tensor per model '
                             f'({num_models}), found {len(boxes[j])}/{len(scores[j])}/'
                             f'{len(labels[j])}')
        for t, (b, s, lab) in enumerate(zip(boxes[j], scores[j], labels[j])):
            if not (b.reshape(-1, 4).shape[0] == s.numel() == lab.numel()):
                raise ValueError(f'image {j}, model {t}: {b.reshape(-1, 4).shape[0]} boxes, '
                                 f'{s.numel()} scores and {lab.numel()} labels; they must match')
    if weights is not None and len(weights) != num_models:
        raise ValueError(f'need one weight per model ({num_models}), found {len(weights)}')
    check_fusion_input(boxes, scores, weights)
    device = boxes[0][0].device if num_models else torch.device('cpu')
    dtype = torch.float64
    empty = (torch.zeros((0, 4), dtype=dtype, device=device),
             torch.zeros((0, ), dtype=dtype, device=device),
             torch.zeros((0, ), dtype=torch.long, device=device))
    if num_models == 0:
        return [empty for _ in range(num_images)]
    w = torch.ones(num_models, dtype=dtype, device=device) if weights is None else \
        torch.as_tensor(weights, dtype=dtype, device=device)
    counts = torch.tensor([[scores[j][t].numel() for t in range(num_models)]
                           for j in range(num_images)], dtype=torch.long, device=device)
    flat = [(j, t) for j in range(num_images) for t in range(num_models)]
    out_boxes, out_scores, out_labels, per_image = fuse_flat(
        counts, torch.cat([boxes[j][t].reshape(-1, 4).to(dtype) for j, t in flat]),
        torch.cat([scores[j][t].reshape(-1).to(dtype) for j, t in flat]),
        torch.cat([labels[j][t].reshape(-1).long() for j, t in flat]), w, float(iou_thr),
        float(skip_box_thr), conf_type, bool(allows_overflow))
    sizes = per_image.tolist()
    return list(zip(out_boxes.split(sizes), out_scores.split(sizes), out_labels.split(sizes)))


#: The operator's schema: ``counts[j, t]`` boxes of model t in image j, held in
#: that order (image-major) in ``boxes`` (normalised x1 y1 x2 y2, float64),
#: ``scores`` (float64) and ``labels`` (int64); one float64 weight per model. It
#: returns the fused boxes, scores and labels of every image, image after image
#: (each by descending score), and the number of fused boxes per image.
SCHEMA = ('(Tensor counts, Tensor boxes, Tensor scores, Tensor labels, Tensor weights, '
          'float iou_thr, float skip_box_thr, str conf_type, bool allows_overflow) '
          '-> (Tensor, Tensor, Tensor, Tensor)')


def fuse_flat(counts: Tensor, boxes: Tensor, scores: Tensor, labels: Tensor, weights: Tensor,
              iou_thr: float, skip_box_thr: float, conf_type: str, allows_overflow: bool
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``torch.ops.divdet.weighted_boxes_fusion`` (:data:`SCHEMA`); the torch code
    where ``DIVDET_WBF_KERNEL=torch``."""
    if os.environ.get('DIVDET_WBF_KERNEL') == 'torch':
        return _wbf_torch(counts, boxes, scores, labels, weights, iou_thr, skip_box_thr,
                          conf_type, allows_overflow)
    return torch.ops.divdet.weighted_boxes_fusion(counts, boxes, scores, labels, weights,
                                                  iou_thr, skip_box_thr, conf_type,
                                                  allows_overflow)


def _check_flat(counts, boxes, scores, labels, weights, conf_type) -> None:
    """The checks of the C++ kernel (``csrc/wbf_op.cpp``), for the torch code."""
    for t, name, dtype, dim in ((counts, 'counts (images, models)', torch.long, 2),
                                (boxes, 'boxes (n, 4)', torch.float64, 2),
                                (scores, 'scores (n,)', torch.float64, 1),
                                (labels, 'labels (n,)', torch.long, 1),
                                (weights, 'weights (models,)', torch.float64, 1)):
        if t.dtype != dtype:
            raise RuntimeError(f'weighted_boxes_fusion: expected {name} of dtype {dtype}, '
                               f'found {t.dtype}')
        if t.dim() != dim:
            raise RuntimeError(f'weighted_boxes_fusion: expected {name} with {dim} '
                               f'dimension(s), found shape {tuple(t.shape)}')
    n = scores.shape[0]
    if boxes.shape != (n, 4) or labels.shape != (n, ):
        raise RuntimeError(f'weighted_boxes_fusion: expected boxes (n, 4), scores (n,) and '
                           f'labels (n,) with one n, found {tuple(boxes.shape)}, '
                           f'{tuple(scores.shape)} and {tuple(labels.shape)}')
    if weights.shape[0] != counts.shape[1]:
        raise RuntimeError(f'weighted_boxes_fusion: expected one weight per model '
                           f'({counts.shape[1]}), found {weights.shape[0]}')
    if int(counts.sum()) != n:
        raise RuntimeError(f'weighted_boxes_fusion: counts add up to {int(counts.sum())} '
                           f'boxes, found {n}')
    if conf_type not in CONF_TYPES:
        raise RuntimeError(f'weighted_boxes_fusion: conf_type must be one of '
                           f'{", ".join(CONF_TYPES)}, found {conf_type}')


def _wbf_torch(counts: Tensor, boxes: Tensor, scores: Tensor, labels: Tensor, weights: Tensor,
               iou_thr: float, skip_box_thr: float, conf_type: str, allows_overflow: bool
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The operator in torch, batched (the kernel for every device but the CPU)."""
    _check_flat(counts, boxes, scores, labels, weights, conf_type)
    num_images, num_models = counts.shape
    device, dtype = boxes.device, torch.float64
    w = weights
    per_image_empty = torch.zeros(num_images, dtype=torch.long, device=device)
    empty = (boxes.new_zeros((0, 4)), scores.new_zeros(0), labels.new_zeros(0), per_image_empty)
    if num_models == 0 or boxes.shape[0] == 0:
        return empty

    # -- prefilter_boxes: image-major, then model, then box order --------------------
    grid = torch.stack(torch.meshgrid(torch.arange(num_images, device=device),
                                      torch.arange(num_models, device=device), indexing='ij'),
                       -1).reshape(-1, 2)
    pairs = grid.repeat_interleave(counts.reshape(-1), 0)
    all_boxes, all_scores, all_labels = boxes, scores, labels
    image, model = pairs[:, 0], pairs[:, 1]
    x1 = torch.minimum(all_boxes[:, 0], all_boxes[:, 2]).clamp(0, 1)
    x2 = torch.maximum(all_boxes[:, 0], all_boxes[:, 2]).clamp(0, 1)
    y1 = torch.minimum(all_boxes[:, 1], all_boxes[:, 3]).clamp(0, 1)
    y2 = torch.maximum(all_boxes[:, 1], all_boxes[:, 3]).clamp(0, 1)
    keep = ((all_scores >= skip_box_thr) & ((x2 - x1) * (y2 - y1) != 0)).nonzero()[:, 0]
    # One row per kept box: x1 y1 x2 y2, weighted score, model weight, model.
    wm = w[model]
    packed = torch.stack([x1, y1, x2, y2, all_scores * wm, wm, model.to(dtype)], 1)
    packed = packed.index_select(0, keep)
    image, label = image.index_select(0, keep), all_labels.index_select(0, keep)
    wscore = packed[:, 4]
    n = packed.shape[0]
    if n == 0:
        return empty

    # One group per (image, label), numbered in order of first appearance; within
    # a group, descending weighted score with ties in reverse input order.
    label_span = int(label.max()) - int(label.min()) + 1
    uniq_key, group = _unique_in_order(image * label_span + (label - label.min()),
                                       num_images * label_span)
    num_groups = len(uniq_key)
    group_image = uniq_key.div(label_span, rounding_mode='floor')
    group_label = uniq_key % label_span + label.min()
    per_group = torch.bincount(group, minlength=num_groups)
    # Process groups largest first, so that the groups still active at step j
    # are a prefix [0, active[j]) and every step works on slices.
    by_size = torch.argsort(per_group, descending=True, stable=True)
    rank = torch.empty_like(by_size)
    rank[by_size] = torch.arange(num_groups, device=device)
    proc = rank[group]  # processing slot of every box's group
    # (slot asc, weighted score desc): stable sorts of reversed input order, by
    # score, then by slot (exact; a composite float key would merge close scores).
    order = torch.arange(n - 1, -1, -1, device=device)
    order = order[torch.sort(wscore[order], descending=True, stable=True).indices]
    order = order[torch.sort(proc[order], stable=True).indices]
    sizes = per_group[by_size]
    steps = int(sizes[0])
    pos = torch.arange(n, device=device) - (torch.cumsum(sizes, 0) - sizes)[proc[order]]
    slot = torch.full((num_groups, steps), -1, dtype=torch.long, device=device)
    slot[proc[order], pos] = order
    active = torch.bincount(sizes, minlength=steps + 1).flip(0).cumsum(0).flip(0).tolist()

    # -- greedy clustering: every group in parallel, one step per box of the largest ---
    fused, assign, num_clusters = _cluster_torch(packed, slot, active, iou_thr)

    # Per-cluster statistics from the assignment, once (index_add_ adds in index
    # order: each cluster's boxes in visiting order, as the loop would).
    present = slot >= 0
    box = slot[present]
    first_of_group = torch.arange(num_groups, device=device) * steps
    flat = (first_of_group[:, None] + assign)[present]
    size = num_groups * steps
    score, weight = packed[box, 4], packed[box, 5]
    conf_sum = torch.zeros(size, dtype=dtype, device=device).index_add_(0, flat, score)
    conf_max = torch.zeros(size, dtype=dtype, device=device).scatter_reduce_(
        0, flat, score, reduce='amax')
    weight_sum = torch.zeros(size, dtype=dtype, device=device).index_add_(0, flat, weight)
    count = torch.bincount(flat, minlength=size).to(dtype)
    members = torch.zeros(size * num_models, dtype=torch.bool, device=device)
    members[flat * num_models + packed[box, 6].long()] = True
    conf_sum, conf_max, weight_sum, count = (x.view(num_groups, steps) for x in
                                             (conf_sum, conf_max, weight_sum, count))
    members = members.view(num_groups, steps, num_models)
    cluster_ids = torch.arange(steps, device=device)
    rows = torch.arange(num_groups, device=device)
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
    # Clusters in concatenation order (groups by first appearance, clusters by
    # creation), then overall_boxes[:, 1].argsort()[::-1] per image: descending
    # score, ties in reverse order: stable sorts by score, then by image.
    valid, fused, conf = valid[rank], fused[rank], conf[rank]
    out_boxes, out_scores = fused[valid], conf[valid]
    out_groups = rows[:, None].expand(-1, steps)[valid]
    out_image, out_labels = group_image[out_groups], group_label[out_groups]
    final = torch.arange(len(out_scores) - 1, -1, -1, device=device)
    final = final[torch.sort(out_scores[final], descending=True, stable=True).indices]
    final = final[torch.sort(out_image[final], stable=True).indices]
    return (out_boxes[final], out_scores[final], out_labels[final],
            torch.bincount(out_image, minlength=num_images))


def _cluster_torch(packed: Tensor, slot: Tensor, active: list[int], iou_thr: float
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """WBF's greedy clustering of every group at once: one step per box of the largest.

    Args:
        packed: (n, 7) kept boxes: x1 y1 x2 y2, weighted score, model weight, model.
        slot: (G, steps) row of ``packed`` of group g's j-th box in visiting
            order, -1 past the group's end; groups largest first.
        active: ``active[j]``: groups with at least j boxes (a prefix).
        iou_thr: a box joins the cluster whose fused box it overlaps most if
            that IoU is above this, else it starts a cluster.

    Returns:
        fused (G, steps, 4) boxes of the clusters (zeros past the last), the
        cluster of every (group, box) (G, steps), clusters per group (G,).
    """
    num_groups, steps = slot.shape
    device, dtype = packed.device, packed.dtype
    # Step-major copies of every group's boxes in visiting order, so that step j
    # reads rows [:active] of one block; padding rows are never read.
    visit = packed.index_select(0, slot.clamp(min=0).t().reshape(-1)).view(steps, num_groups, 7)
    step_boxes = visit[..., :4].unbind(0)
    step_areas = ((visit[..., 2] - visit[..., 0]) * (visit[..., 3] - visit[..., 1])).unbind(0)
    step_sums = torch.cat([visit[..., 4:5] * visit[..., :4], visit[..., 4:5]], -1).unbind(0)
    # Clusters not created yet are the empty box at 0, whose IoU with any kept
    # box (positive area) is 0: the first maximum is always an existing
    # cluster, so they need no mask.
    fused = torch.zeros((num_groups, steps, 4), dtype=dtype, device=device)
    flat_fused = fused.view(-1, 4)
    sums = torch.zeros((num_groups * steps, 5), dtype=dtype, device=device)  # s*box, s
    assign = torch.zeros((steps, num_groups), dtype=torch.long, device=device)
    num_clusters = torch.zeros(num_groups, dtype=torch.long, device=device)
    first_of_group = torch.arange(num_groups, device=device) * steps
    for j in range(steps):
        a = active[j + 1] if j else num_groups  # groups with a (j+1)-th box
        b, clusters = step_boxes[j][:a], num_clusters[:a]
        if j:
            view = fused[:a, :j]
            lt = torch.maximum(view[..., :2], b[:, None, :2])
            rb = torch.minimum(view[..., 2:], b[:, None, 2:])
            inter = (rb - lt).clamp_(min=0).prod(-1)
            area = (view[..., 2] - view[..., 0]) * (view[..., 3] - view[..., 1])
            best_iou, best = (inter / (area + step_areas[j][:a, None] - inter)).max(1)
            new = best_iou <= iou_thr
            k = torch.where(new, clusters, best)
        else:
            new = torch.ones(a, dtype=torch.bool, device=device)
            k = clusters
        assign[j, :a] = k
        flat = first_of_group[:a] + k
        sums.index_add_(0, flat, step_sums[j][:a])
        # A new cluster keeps its box as is; a grown one gets the
        # confidence-weighted mean of its boxes (get_weighted_box).
        grown = sums.index_select(0, flat)
        flat_fused.index_copy_(0, flat, torch.where(new[:, None], b, grown[:, :4] / grown[:, 4:]))
        clusters.add_(new)
    return fused, assign.t(), num_clusters


def _unique_in_order(values: Tensor, num_values: int) -> tuple[Tensor, Tensor]:
    """Unique values of ``values`` (all in ``[0, num_values)``) in order of first
    appearance, and each element's index among them."""
    n = len(values)
    positions = torch.arange(n, device=values.device)
    if num_values > 4 * n:  # sparse keys: sort-based
        uniq, inverse = torch.unique(values, return_inverse=True)
        first = torch.full((len(uniq), ), n, dtype=torch.long, device=values.device)
        first.scatter_reduce_(0, inverse, positions, reduce='amin')
        order = torch.argsort(first)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=values.device)
        return uniq[order], rank[inverse]
    first = torch.full((num_values, ), n, dtype=torch.long, device=values.device)
    first.scatter_reduce_(0, values, positions, reduce='amin')
    present = (first < n).nonzero()[:, 0]
    uniq = present[torch.argsort(first[present])]
    index = torch.empty(num_values, dtype=torch.long, device=values.device)
    index[uniq] = torch.arange(len(uniq), device=values.device)
    return uniq, index[values]


def _load_op() -> bool:
    """Load the operator's C++ library (``divdet.fusion._C``, built by setup.py);
    False where divdet was installed without it."""
    try:
        spec = importlib.util.find_spec('divdet.fusion._C')
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin:
        return False
    try:
        torch.ops.load_library(spec.origin)
    except OSError as err:  # a build for another torch, e.g. after an upgrade
        warnings.warn(f'{spec.origin} is not a usable build of divdet/fusion/csrc ({err}); '
                      'Weighted Boxes Fusion runs its slower torch code on the CPU. Rebuild '
                      'it: `pip install --no-build-isolation -e .` in the divdet checkout',
                      stacklevel=2)
        return False
    return hasattr(torch.ops.divdet, 'weighted_boxes_fusion')


#: Whether the operator has its C++ CPU kernel (otherwise the torch code runs on
#: the CPU too).
HOST_KERNEL = _load_op()
if not HOST_KERNEL:
    torch.library.define('divdet::weighted_boxes_fusion', SCHEMA)
# the torch code for every device without a kernel of its own (all but the CPU)
torch.library.impl('divdet::weighted_boxes_fusion', 'CompositeExplicitAutograd')(_wbf_torch)


@torch.library.register_fake('divdet::weighted_boxes_fusion')
def _wbf_fake(counts, boxes, scores, labels, weights, iou_thr, skip_box_thr, conf_type,
              allows_overflow):
    """Shapes for torch.compile: as many fused boxes as the data gives."""
    m = torch.library.get_ctx().new_dynamic_size()
    return (boxes.new_empty((m, 4)), scores.new_empty((m, )), labels.new_empty((m, )),
            counts.new_empty((counts.shape[0], )))
