"""Decoding, score filter and NMS of all members and all images in batched calls.

mmdet's ``predict_by_feat`` (``BaseDenseHead``'s, which SSD, RetinaNet, FCOS and
ATSS use) post-processes image by image (a Python loop over images, and per
image one loop over levels), and a divided head calls it once per member:
``S x N x levels`` small calls whose count grows with S and the batch.
:func:`batched_post_process` stacks the members on the batch dimension and does
the same work in a number of calls that does not grow with S or the batch,
except one NMS call per member and image:

- per level: the class scores (softmax without the background column, or a
  sigmoid per class), the ``score_thr`` filter and the ``nms_pre`` best scores
  of every (member, image) row in one ``topk``;
- one decode of every kept anchor or point (``DeltaXYWHBBoxCoder`` or
  ``DistancePointBBoxCoder``), clipped to each image, rescaled to the original
  image, the kept scores multiplied by their score factors (FCOS's and ATSS's
  centerness, a third output), ``min_bbox_size`` filtered;
- one NMS call per (member, image), with the labels' boxes offset apart as
  mmcv's ``batched_nms`` does (one call over all members and images would
  compare every box with every other, quadratic in S x N: 6x slower at S=2,
  batch 8 on the CPU), and ``max_per_img``.

The results equal mmdet's per-image results: the same boxes, scores and labels
in descending score (tested against ``predict_by_feat`` of SSD, RetinaNet, FCOS
and ATSS heads), up to the order of boxes with equal scores and the choice among
equal scores at the ``nms_pre`` cut. :func:`supports_batched` names the heads and
test configs it does not cover; those run mmdet's code.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import nms as tv_nms

from divdet.utils.segments import first_of_each

#: The box coders the batched decoding covers (their ``decode(priors, preds)``).
BATCHED_CODERS = ('DeltaXYWHBBoxCoder', 'DistancePointBBoxCoder')


def own_method(head, base: type, names: Sequence[str]) -> Optional[str]:
    """The first of ``names`` that ``head``'s class does not take from ``base`` (a
    batched path computes mmdet's ``base`` methods only), else None."""
    return next((name for name in names
                 if getattr(type(head), name, None) is not getattr(base, name)), None)


def supports_batched(head, cfg) -> Optional[str]:
    """None if :func:`batched_post_process` computes ``head``'s results, else why not."""
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    name = own_method(head, BaseDenseHead,
                      ('predict_by_feat', '_predict_by_feat_single', '_bbox_post_process'))
    if name is not None:
        return f'{type(head).__name__} has its own {name}'
    coder = type(getattr(head, 'bbox_coder', None)).__name__
    if coder not in BATCHED_CODERS:
        return f'box coder {coder}'
    if getattr(head.bbox_coder, 'add_ctr_clamp', False) or not getattr(
            head.bbox_coder, 'clip_border', True):
        return 'a box coder with centre clamping or without border clipping'
    nms = (cfg or {}).get('nms')
    if not isinstance(nms, dict) or nms.get('type', 'nms') != 'nms' or nms.get('offset', 0):
        return f'nms {nms!r} (only type="nms" with offset 0 is batched)'
    if getattr(getattr(head, 'loss_cls', None), 'custom_cls_channels', False):
        return 'custom class channels'
    return None


def level_rows(maps: Tensor, channels: int) -> Tensor:
    """One level's (B, A * channels, H, W) -> (B, H * W * A, channels), SSDHead's order."""
    b = maps.shape[0]
    return maps.permute(0, 2, 3, 1).reshape(b, -1, channels)


def member_candidates(head, outs: Sequence[tuple], shapes: Tensor, inverse: Optional[Tensor],
                      cfg) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Every (member, image) row's candidates before NMS, in fixed-shape tensors.

    Args:
        head, outs, cfg: as :func:`batched_post_process`.
        shapes: (N, 2) the images' (h, w) the boxes are clipped to.
        inverse: (N, 2) ``1 / scale_factor`` (w, h) to rescale the boxes to the
            original images, or None.

    Returns:
        ``boxes`` (B, M, 4), ``scores`` and ``labels`` (B, M), ``keep`` (B, M) the
        candidates past the score and size filters, and ``shifted`` (B, M, 4) the
        boxes with each label's offset apart for a class-aware NMS; B = S x N rows,
        member-major. Shared by :func:`batched_post_process` and the exported model
        (:mod:`divdet.apis.export`), so both compute the same numbers.
    """
    num_members = len(outs)
    rows = num_members * shapes.shape[0]
    num_classes = head.num_classes
    channels = head.cls_out_channels
    sigmoid = bool(getattr(head, 'use_sigmoid_cls', False))
    factors = len(outs[0]) > 2 and outs[0][2] is not None  # centerness (FCOS, ATSS)
    sizes = [c.shape[-2:] for c in outs[0][0]]
    device = outs[0][0][0].device
    priors = head.prior_generator.grid_priors(sizes, dtype=outs[0][0][0].dtype, device=device)
    code = head.bbox_coder.encode_size
    score_thr = cfg.get('score_thr', 0)
    nms_pre = cfg.get('nms_pre', -1)

    scores, labels, anchors, deltas, weights = [], [], [], [], []
    for level, level_priors in enumerate(priors):
        cls = level_rows(torch.cat([o[0][level] for o in outs]), channels)
        prob = cls.sigmoid() if sigmoid else cls.softmax(-1)[..., :num_classes]
        prob = prob.reshape(rows, -1)  # (B, K * C)
        k = prob.shape[1] if nms_pre is None or nms_pre <= 0 else min(nms_pre, prob.shape[1])
        top, idx = prob.masked_fill(prob <= score_thr, -1.0).topk(k, dim=1)
        anchor, label = idx // num_classes, idx % num_classes
        box = level_rows(torch.cat([o[1][level] for o in outs]), code)
        scores.append(top)
        labels.append(label)
        anchors.append(level_priors[anchor])
        deltas.append(box.gather(1, anchor.unsqueeze(-1).expand(-1, -1, code)))
        if factors:
            factor = level_rows(torch.cat([o[2][level] for o in outs]), 1).squeeze(-1)
            weights.append(factor.gather(1, anchor).sigmoid())
    scores, labels = torch.cat(scores, 1), torch.cat(labels, 1)
    anchors, deltas = torch.cat(anchors, 1), torch.cat(deltas, 1)
    keep = scores > score_thr  # (B, M)

    boxes = head.bbox_coder.decode(anchors.flatten(0, 1), deltas.flatten(0, 1)).view(rows, -1, 4)
    bound = shapes.to(device, boxes.dtype).repeat(num_members, 1).flip(1).repeat(1, 2).unsqueeze(1)
    boxes = torch.minimum(boxes.clamp(min=0), bound)  # bound (B, 1, 4): w, h, w, h
    if inverse is not None:
        boxes = boxes * inverse.to(device, boxes.dtype).repeat(num_members, 1).repeat(
            1, 2).unsqueeze(1)
    if factors:  # mmdet multiplies after the nms_pre cut, before NMS
        scores = torch.where(keep, scores * torch.cat(weights, 1), scores)
    min_size = cfg.get('min_bbox_size', -1)
    if min_size is not None and min_size >= 0:
        keep &= ((boxes[..., 2] - boxes[..., 0]) > min_size) & \
            ((boxes[..., 3] - boxes[..., 1]) > min_size)

    # mmcv's batched_nms per image: each label's boxes shifted out of the others' reach
    span = boxes.masked_fill(~keep.unsqueeze(-1), 0).amax((1, 2)) + 1  # (B,)
    shifted = boxes + (labels * span.unsqueeze(1)).unsqueeze(-1).to(boxes.dtype)
    return boxes, scores, labels, keep, shifted


def max_per_img_of(cfg) -> Optional[int]:
    """The test config's ``max_per_img``; None (keep all) for None or <= 0."""
    top = cfg.get('max_per_img') or None
    return top if top and top > 0 else None


def batched_post_process(head, outs: Sequence[tuple], img_metas: Sequence[dict], cfg,
                         rescale: bool = False) -> list[list[InstanceData]]:
    """Detections of every member and image, as mmdet's ``predict_by_feat``.

    Args:
        head: the members' mmdet dense head (its priors, coder and class count;
            the members' heads are built from one config).
        outs: per member, (cls_scores, bbox_preds[, score_factors]) over levels,
            (N, A * K, H, W), (N, A * 4, H, W) and (N, A, H, W); K is C + 1 for a
            softmax classifier, C for a sigmoid one.
        img_metas: per image, with ``img_shape`` (and ``scale_factor`` for
            ``rescale``).
        cfg: the test config (``score_thr``, ``nms_pre``, ``nms``,
            ``min_bbox_size``, ``max_per_img``).
        rescale: boxes in the original image's coordinates.

    Returns:
        Per member, per image, an ``InstanceData`` with bboxes, scores, labels.
    """
    num_members, num_images = len(outs), len(img_metas)
    device = outs[0][0][0].device
    shapes = torch.tensor([meta['img_shape'][:2] for meta in img_metas], dtype=torch.float32)
    inverse = torch.tensor([[1 / s for s in meta['scale_factor']] for meta in img_metas],
                           dtype=torch.float32) if rescale else None
    boxes, scores, labels, keep, shifted = member_candidates(head, outs, shapes, inverse, cfg)
    counts = keep.sum(1).tolist()  # rows stay in order through the mask
    boxes, scores, labels, shifted = boxes[keep], scores[keep], labels[keep], shifted[keep]
    # One NMS call per (member, image): one call over all of them would compare every
    # box with every other, quadratic in S x N.
    iou = float(cfg['nms']['iou_threshold'])
    max_per_img = max_per_img_of(cfg)
    empty = shifted.new_zeros(0, dtype=torch.long)
    kept = [tv_nms(b, s, iou) if n else empty  # indices within the row, best first
            for n, b, s in zip(counts, shifted.split(counts), scores.split(counts))]
    found = [len(k) for k in kept]
    sizes = [min(k, max_per_img) if max_per_img else k for k in found]
    # rows' offsets and the first max_per_img of each row, built on the host: one
    # gather for all rows instead of a slice and an add per row
    offset = torch.tensor([0] + counts[:-1]).cumsum(0).repeat_interleave(torch.tensor(found))
    take = first_of_each(found, max_per_img or None)
    kept = (torch.cat(kept) + offset.to(device, non_blocking=True))[
        take.to(device, non_blocking=True)]
    results = [InstanceData(bboxes=b, scores=s, labels=lab) for b, s, lab in zip(
        boxes[kept].split(sizes), scores[kept].split(sizes), labels[kept].split(sizes))]
    return [results[m * num_images:(m + 1) * num_images] for m in range(num_members)]
