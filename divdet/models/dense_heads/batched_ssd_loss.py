"""mmdet's SSD loss for all members and all images in batched tensor operations.

mmdet's ``SSDHead.loss_by_feat`` assigns targets and mines hard negatives image
by image (``multi_apply``): a few hundred operators per image, each a kernel
launch on a GPU, and a divided head would pay them once per member. Here the
same computation runs on the whole batch, in a number of operators that does
not grow with the batch or with S:

- :func:`ssd_targets`: IoU of every anchor with each image's ground truth,
  padded to the batch's largest count (padded rows never win), then
  ``MaxIoUAssigner``'s rules (``pos_iou_thr``, ``neg_iou_thr`` as a number or a
  range, ``min_pos_iou`` with ``gt_max_assign_all`` either way, boxes ignored by
  ``ignore_iof_thr``), anchors outside the image or the padded input
  (``allowed_border``, the anchor generator's valid flags), ``PseudoSampler``'s
  positives and negatives, the coder's box targets and ``pos_weight``; computed
  once per batch for all members (their heads are built from one config);
- :func:`ssd_losses`: the members' predictions stacked, one cross entropy,
  hard negatives of every (member, image) row at once (the ``neg_pos_ratio x
  positives`` largest negative losses of each row, by one sort), and the
  smooth-L1 box term; averaged by the batch's positives as mmdet does.

The losses equal mmdet's (tested: within float rounding, same gradients, on
batches with images without boxes, many boxes, ties in IoU, ignored boxes and
padded inputs). Two things differ in form only: each loss is one tensor per
member, the sum over images of mmdet's per-image list (mmdet's logs and
``parse_losses`` show the same totals); and among negatives with *equal* loss
at the cut, the lower anchor index is taken (mmdet's ``topk`` leaves that
choice unspecified, and it differs between devices), which changes no loss
value. :func:`supports_batched_loss` names the configs this does not cover;
the head then runs mmdet's per-image loss.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet.models.losses.smooth_l1_loss import smooth_l1_loss
from mmdet.structures.bbox import get_box_tensor
from torch import Tensor

from divdet.models.dense_heads.batched_post_process import level_rows, own_method

#: IoU given to padded ground-truth rows and to anchors outside the image: below
#: anything an IoU (>= 0) or mmdet's ignored anchors (-1) can be.
_NEVER = -3.0


def supports_batched_targets(head) -> Optional[str]:
    """None if :func:`max_iou_targets` computes ``head``'s ``AnchorHead.get_targets``
    (:func:`batched_get_targets`), else why not."""
    from mmdet.models.dense_heads.anchor_head import AnchorHead
    if not isinstance(head, AnchorHead) or own_method(
            head, AnchorHead, ('get_targets', '_get_targets_single', 'get_anchors')):
        return f'{type(head).__name__} assigns its own targets'
    assigner, sampler = getattr(head, 'assigner', None), getattr(head, 'sampler', None)
    if type(assigner).__name__ != 'MaxIoUAssigner':
        return f'assigner {type(assigner).__name__} (only MaxIoUAssigner is batched)'
    calc = assigner.iou_calculator
    if type(calc).__name__ != 'BboxOverlaps2D' or getattr(calc, 'scale', 1.0) != 1.0 \
            or getattr(calc, 'dtype', None) is not None:
        return 'an IoU calculator other than a plain BboxOverlaps2D'
    if type(sampler).__name__ != 'PseudoSampler':
        return f'sampler {type(sampler).__name__} (only PseudoSampler is batched)'
    if type(head.bbox_coder).__name__ != 'DeltaXYWHBBoxCoder':
        return f'box coder {type(head.bbox_coder).__name__}'
    if getattr(head, 'reg_decoded_bbox', False):
        return 'reg_decoded_bbox'
    return None


def supports_batched_loss(head) -> Optional[str]:
    """None if :func:`ssd_targets` and :func:`ssd_losses` compute ``head``'s loss,
    else why not (mmdet's per-image loss is used then)."""
    cfg = head.train_cfg or {}
    reason = supports_batched_targets(head)
    if reason is not None:
        return reason
    if getattr(head, 'use_sigmoid_cls', False):
        return 'sigmoid classification'
    if 'neg_pos_ratio' not in cfg or 'smoothl1_beta' not in cfg:
        return 'a train_cfg without neg_pos_ratio and smoothl1_beta'
    return None


class SSDTargets(NamedTuple):
    """Training targets of a batch, every anchor of every image (A anchors, N images).

    Attributes:
        labels: (N, A) class per anchor, ``num_classes`` for background, ignored
            and outside anchors.
        label_weights: (N, A) 1 (or ``pos_weight``) for positives, 1 for
            negatives, 0 for ignored and outside anchors.
        bbox_targets: (N, A, 4) encoded ground truth of positives, 0 elsewhere.
        bbox_weights: (N, A, 4) 1 for positives, 0 elsewhere.
        avg_factor: () the batch's positives, each image counting at least 1
            (mmdet's ``PseudoSampler`` average factor).
    """

    labels: Tensor
    label_weights: Tensor
    bbox_targets: Tensor
    bbox_weights: Tensor
    avg_factor: Tensor


def _padded(tensors: Sequence[Tensor], fill: float) -> tuple[Tensor, Tensor]:
    """Per-image (n_i, *rest) tensors -> (N, max n_i, *rest) padded with ``fill``, and
    the (N, max n_i) mask of real rows; a constant number of operators."""
    counts = [len(t) for t in tensors]
    most = max(counts + [1])
    first = tensors[0]
    out = first.new_full((len(tensors) * most, *first.shape[1:]), fill)
    rows = [i * most + j for i, n in enumerate(counts) for j in range(n)]
    real = torch.zeros(len(tensors) * most, dtype=torch.bool)
    real[rows] = True
    real = real.to(first.device, non_blocking=True)
    if rows:
        out[real] = torch.cat(list(tensors))
    return out.view(len(tensors), most, *first.shape[1:]), real.view(len(tensors), most)


def _inside(head, featmap_sizes, anchors: Tensor, img_metas) -> Optional[Tensor]:
    """(N, A) anchors that mmdet assigns (valid for the padded input and inside the
    image by ``allowed_border``), or None when that is every anchor of every image."""
    generator = head.prior_generator
    masks, all_valid = [], True
    for level, ((h, w), stride) in enumerate(zip(featmap_sizes, generator.strides)):
        # AnchorGenerator.valid_flags: cells up to ceil(pad / stride) are valid
        valid = [(min(int(math.ceil(m['pad_shape'][0] / stride[1])), h),
                  min(int(math.ceil(m['pad_shape'][1] / stride[0])), w)) for m in img_metas]
        all_valid &= all(v == (h, w) for v in valid)
        masks.append((valid, h, w, generator.num_base_priors[level]))
    inside = None
    if not all_valid:
        parts = []
        for valid, h, w, num_base in masks:
            limits = torch.tensor(valid, device=anchors.device)  # (N, 2)
            ys = torch.arange(h, device=anchors.device).view(1, h, 1) < limits[:, :1, None]
            xs = torch.arange(w, device=anchors.device).view(1, 1, w) < limits[:, 1:, None]
            parts.append((ys & xs).unsqueeze(-1).expand(-1, h, w, num_base).reshape(
                len(img_metas), -1))
        inside = torch.cat(parts, 1)
    return _within_border(head, anchors, img_metas, inside)


def _within_border(head, anchors: Tensor, img_metas, valid: Optional[Tensor]
                   ) -> Optional[Tensor]:
    """``valid`` (N, A) (None: all) and'ed with mmdet's ``anchor_inside_flags`` of each
    image for ``train_cfg.allowed_border`` >= 0."""
    allowed_border = (head.train_cfg or {}).get('allowed_border', -1)
    if allowed_border < 0:
        return valid
    shapes = torch.tensor([m['img_shape'][:2] for m in img_metas], dtype=anchors.dtype,
                          device=anchors.device)  # (N, 2): h, w
    b = allowed_border
    box = anchors.unsqueeze(0)
    within = ((box[..., 0] >= -b) & (box[..., 1] >= -b)
              & (box[..., 2] < shapes[:, 1:] + b) & (box[..., 3] < shapes[:, :1] + b))
    return within if valid is None else valid & within


def ssd_targets(head, featmap_sizes: Sequence, batch_gt_instances: Sequence,
                batch_img_metas: Sequence[dict],
                batch_gt_instances_ignore: Optional[Sequence] = None,
                device: torch.device | str = 'cpu') -> SSDTargets:
    """mmdet's SSD targets (``AnchorHead.get_targets`` with ``MaxIoUAssigner`` and
    ``PseudoSampler``) for every image of the batch at once.

    Args:
        head: an SSDHead (its prior generator, assigner, coder and train_cfg).
        featmap_sizes: (H_l, W_l) of each level.
        batch_gt_instances: per image, ``bboxes`` (n_i, 4) and ``labels`` (n_i,).
        batch_img_metas: per image, with ``img_shape`` and ``pad_shape``.
        batch_gt_instances_ignore: per image, boxes to ignore (or None).
        device: where the anchors are.

    Raises:
        ValueError: an image has no anchor inside it (as mmdet does).
    """
    anchors = torch.cat(head.prior_generator.grid_priors(featmap_sizes, device=device))  # (A, 4)
    inside = _inside(head, featmap_sizes, anchors, batch_img_metas)
    return max_iou_targets(head, anchors, inside, batch_gt_instances, batch_gt_instances_ignore)


def max_iou_targets(head, anchors: Tensor, inside: Optional[Tensor],
                    batch_gt_instances: Sequence,
                    batch_gt_instances_ignore: Optional[Sequence] = None) -> SSDTargets:
    """``AnchorHead.get_targets`` with ``MaxIoUAssigner`` and ``PseudoSampler`` for every
    image at once: :class:`SSDTargets` (``avg_factor``: the batch's positives, each image
    counting at least one, as mmdet's ``SamplingResult`` does).

    Args:
        head: an mmdet anchor head (its assigner, coder, ``num_classes``, train_cfg).
        anchors: (A, 4) every level's anchors, one image's (all images share them).
        inside: (N, A) the anchors mmdet assigns in each image (valid flags and
            ``allowed_border``), or None for all.
        batch_gt_instances, batch_gt_instances_ignore: as :func:`ssd_targets`.

    Raises:
        ValueError: an image has no anchor inside it (as mmdet does).
    """
    assigner, cfg = head.assigner, head.train_cfg
    device = anchors.device
    num_images, num_anchors = len(batch_gt_instances), anchors.shape[0]
    gt_boxes, gt_real = _padded([get_box_tensor(g.bboxes) for g in batch_gt_instances],
                                0.0)  # (N, G, 4)
    gt_labels, _ = _padded([g.labels for g in batch_gt_instances], 0)  # (N, G)
    gt_boxes = gt_boxes.to(anchors.dtype)
    has_gt = gt_real.any(1)  # (N,)

    overlaps = assigner.iou_calculator(gt_boxes, anchors.expand(num_images, -1, -1))  # (N, G, A)
    ignores = [get_box_tensor(g.bboxes) if g is not None and 'bboxes' in g else None
               for g in batch_gt_instances_ignore or [None] * num_images]
    if assigner.ignore_iof_thr > 0 and sum(len(b) for b in ignores if b is not None) > 0:
        empty = anchors.new_zeros(0, 4)
        ignore_boxes, ignore_real = _padded([empty if b is None else b for b in ignores], 0.0)
        ignore_boxes = ignore_boxes.to(anchors.dtype)
        if assigner.ignore_wrt_candidates:
            iof = assigner.iou_calculator(anchors.expand(num_images, -1, -1), ignore_boxes,
                                          mode='iof')  # (N, A, I)
            ignored = iof.masked_fill(~ignore_real.unsqueeze(1), -1.0).amax(2)
        else:
            iof = assigner.iou_calculator(ignore_boxes, anchors.expand(num_images, -1, -1),
                                          mode='iof')  # (N, I, A)
            ignored = iof.masked_fill(~ignore_real.unsqueeze(2), -1.0).amax(1)
        overlaps = overlaps.masked_fill((ignored > assigner.ignore_iof_thr).unsqueeze(1), -1.0)
    if inside is not None:
        if not bool(inside.any(1).all()):
            raise ValueError('There is no valid anchor inside the image boundary. Please '
                             'check the image size and anchor sizes, or set '
                             '``allowed_border`` to -1 to skip the condition.')
        overlaps = overlaps.masked_fill(~inside.unsqueeze(1), _NEVER)
    overlaps = overlaps.masked_fill(~gt_real.unsqueeze(2), _NEVER)

    # MaxIoUAssigner.assign_wrt_overlaps: -1 ignored, 0 negative, i + 1 gt i
    max_overlaps, argmax = overlaps.max(1)  # (N, A): the best ground truth of each anchor
    neg_thr = assigner.neg_iou_thr
    low, high = (0.0, neg_thr) if isinstance(neg_thr, (int, float)) else neg_thr
    assigned = torch.full_like(argmax, -1)
    assigned = assigned.masked_fill((max_overlaps >= low) & (max_overlaps < high), 0)
    assigned = torch.where(max_overlaps >= assigner.pos_iou_thr, argmax + 1, assigned)
    if assigner.match_low_quality:
        gt_max, gt_argmax = overlaps.max(2)  # (N, G): each ground truth's best anchor
        # each gt in turn takes its best anchor(s), a later gt over an earlier one
        order = torch.arange(1, overlaps.shape[1] + 1, device=device).expand_as(gt_max)
        order = order.masked_fill(~((gt_max >= assigner.min_pos_iou) & gt_real), 0)
        if assigner.gt_max_assign_all:
            best = overlaps == gt_max.unsqueeze(2)
            winner = (best * order.unsqueeze(2)).amax(1)
        else:
            winner = torch.zeros_like(assigned).scatter_reduce(1, gt_argmax, order, 'amax')
        assigned = torch.where(winner > 0, winner, assigned)
    assigned = torch.where(has_gt.unsqueeze(1), assigned, 0)  # no gt: every anchor negative
    if inside is not None:
        assigned = assigned.masked_fill(~inside, -1)  # outside: background of weight 0

    # PseudoSampler + AnchorHead._get_targets_single
    num_classes = head.num_classes
    pos = assigned > 0
    gt_index = (assigned - 1).clamp(min=0)
    labels = torch.where(pos, gt_labels.gather(1, gt_index), num_classes)
    pos_weight = cfg.get('pos_weight', -1)
    label_weights = (assigned >= 0).to(anchors.dtype)
    if pos_weight > 0:
        label_weights = torch.where(pos, float(pos_weight), label_weights)
    matched = gt_boxes.gather(1, gt_index.unsqueeze(-1).expand(-1, -1, 4))  # (N, A, 4)
    encoded = head.bbox_coder.encode(anchors.expand(num_images, -1, -1).reshape(-1, 4),
                                     matched.reshape(-1, 4)).view(num_images, num_anchors, 4)
    bbox_weights = pos.unsqueeze(-1).expand(-1, -1, 4).to(anchors.dtype)
    bbox_targets = torch.where(pos.unsqueeze(-1), encoded, 0.0)
    avg_factor = pos.sum(1).clamp(min=1).sum().to(anchors.dtype)  # SamplingResult's num_pos
    return SSDTargets(labels, label_weights, bbox_targets, bbox_weights, avg_factor)


def batched_get_targets(head, original, anchor_list, valid_flag_list, batch_gt_instances,
                        batch_img_metas, batch_gt_instances_ignore=None,
                        unmap_outputs: bool = True, return_sampling_results: bool = False):
    """``AnchorHead.get_targets`` of ``head`` for the whole batch in batched calls
    (:func:`max_iou_targets`): mmdet's per-level lists of (N, A_l) labels and label
    weights, (N, A_l, 4) box targets and weights, and ``avg_factor`` (a 0-d tensor
    instead of mmdet's int: no host synchronisation). Calls ``original`` (mmdet's)
    for what it does not return: sampling results or targets of the inside anchors
    only."""
    if return_sampling_results or not unmap_outputs:
        return original(anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
                        batch_gt_instances_ignore, unmap_outputs, return_sampling_results)
    anchors = torch.cat(anchor_list[0])  # every image has the same anchors
    per_level = [len(a) for a in anchor_list[0]]
    joined: dict = {}  # images of one padded shape share their flags (batched_get_anchors)
    for flags in valid_flag_list:
        if id(flags) not in joined:
            joined[id(flags)] = torch.cat(flags)
    valid = torch.stack([joined[id(flags)] for flags in valid_flag_list])  # (N, A)
    inside = _within_border(head, anchors, batch_img_metas, valid)
    targets = max_iou_targets(head, anchors, inside, batch_gt_instances,
                              batch_gt_instances_ignore)
    return (list(targets.labels.split(per_level, 1)),
            list(targets.label_weights.split(per_level, 1)),
            list(targets.bbox_targets.split(per_level, 1)),
            list(targets.bbox_weights.split(per_level, 1)), targets.avg_factor)


def batched_get_anchors(head, featmap_sizes, batch_img_metas, device='cuda') -> tuple:
    """``AnchorHead.get_anchors`` with the valid flags computed once per padded shape
    (mmdet computes them image by image; a batch has one padded shape): the same
    anchors and flags, the images of one shape sharing one list of flags."""
    anchors = head.prior_generator.grid_priors(featmap_sizes, device=device)
    flags: dict = {}
    for meta in batch_img_metas:
        shape = tuple(meta['pad_shape'])
        if shape not in flags:
            flags[shape] = head.prior_generator.valid_flags(featmap_sizes, meta['pad_shape'],
                                                            device)
    return ([anchors for _ in batch_img_metas],
            [flags[tuple(meta['pad_shape'])] for meta in batch_img_metas])


def flatten_outputs(maps: Sequence[Tensor], channels: int) -> Tensor:
    """Levels of (N, A_l * channels, H_l, W_l) -> (N, A, channels) in SSDHead's anchor order."""
    return torch.cat([level_rows(m, channels) for m in maps], 1)


def ssd_losses(head, cls_scores: Tensor, bbox_preds: Tensor, targets: SSDTargets
               ) -> tuple[Tensor, Tensor]:
    """SSD classification (with hard negatives) and box losses of stacked members.

    Args:
        head: the members' SSDHead (``num_classes``, ``train_cfg``).
        cls_scores: (S, N, A, num_classes + 1) the members' flattened scores.
        bbox_preds: (S, N, A, 4) the members' flattened box deltas.
        targets: :func:`ssd_targets` of the batch.

    Returns:
        loss_cls (S,), loss_bbox (S,): each member's loss summed over the images,
        as the sum of mmdet's per-image SSD losses.
    """
    num_members, num_images, num_anchors, channels = cls_scores.shape
    labels, label_weights = targets.labels, targets.label_weights
    cfg = head.train_cfg
    ce = F.cross_entropy(cls_scores.reshape(-1, channels),
                         labels.expand(num_members, -1, -1).reshape(-1),
                         reduction='none').view(num_members, num_images, num_anchors)
    ce = ce * label_weights
    pos = labels < head.num_classes  # labels are never negative here
    neg = labels == head.num_classes  # ignored and outside anchors too, at loss 0, as mmdet
    num_pos = pos.sum(1)  # (N,)
    num_neg = torch.minimum(cfg['neg_pos_ratio'] * num_pos, neg.sum(1))
    # the num_neg largest negative losses of every (member, image) row: one stable sort
    ranked = ce.masked_fill(~neg, -1.0).sort(dim=-1, descending=True, stable=True).values
    take = torch.arange(num_anchors, device=ce.device) < num_neg.unsqueeze(1)  # (N, A)
    loss_neg = (ranked * take).sum(-1)  # (S, N)
    loss_pos = (ce * pos).sum(-1)
    loss_cls = ((loss_pos + loss_neg) / targets.avg_factor).sum(-1)
    box = smooth_l1_loss(bbox_preds, targets.bbox_targets.expand_as(bbox_preds),
                         targets.bbox_weights.expand_as(bbox_preds), beta=cfg['smoothl1_beta'],
                         reduction='none')
    eps = torch.finfo(torch.float32).eps  # mmdet's weight_reduce_loss with avg_factor
    loss_bbox = (box.sum((2, 3)) / (targets.avg_factor + eps)).sum(-1)
    return loss_cls, loss_bbox
