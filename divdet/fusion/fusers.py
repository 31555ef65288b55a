"""Fusers: merging the detections of several models (the members of a divided
detector, or any detectors) into one set per image.

Every fuser is registered in mmdet's ``TASK_UTILS`` and built from a config,
e.g. ``test_cfg.ensemble = dict(type='WeightedBoxesFusion', iou_thr=0.5)`` in a
divided SSD head. They share one contract (:class:`BaseFuser`):

- in, per image: one ``InstanceData`` per model, with ``bboxes`` (n, 4) as
  (x1, y1, x2, y2) in pixels of the image, ``scores`` (n,) and ``labels`` (n,),
  and the image's (height, width);
- out: one ``InstanceData`` with ``bboxes``, ``scores`` and ``labels``, on the
  models' device, highest scores first.

``weights`` (one positive finite number per model) weigh the models; a single
model's detections are returned as they are. A user adds a fuser by
registering one class that implements :meth:`BaseFuser.fuse_image` (and, if it
can do better than image by image, :meth:`BaseFuser.fuse_checked`); the base
class checks the input and passes a single model's results through.
"""
from __future__ import annotations

import copy
import warnings
from typing import Optional, Sequence

import torch
from mmcv.ops import batched_nms
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

from divdet.fusion import wbf
from divdet.fusion.wbf import CONF_TYPES, check_fusion_input
from divdet.models.utils.nms import nms
from divdet.utils.errors import ConfigError, FusionInputError
from divdet.utils.ranges import check_post_processing
from divdet.utils.segments import first_of_each

#: With ``WeightedBoxesFusion(device='auto')`` and no C++ kernel built, batches up
#: to this many images are fused on the host by the torch code. Measured on an H100
#: (2 members x 200 boxes per image, ms per batch, device vs host torch code): 80
#: labels: 1 image 7.9 vs 3.4, 16 images 11.3 vs 10.4, 32 images 12.9 vs 25.1; 3
#: labels (large groups): 1 image 122 vs 31, 32 images 90 vs 72. With the C++ kernel
#: the host fuses any batch: 32 images of 80 labels in about 6 ms on a 2-core CPU
#: (docs/speed.md), half the H100's device time.
HOST_WBF_MAX_IMAGES = 16

#: The ``type`` names of earlier divdet versions and the fusers they now build.
LEGACY_TYPES = {'wbf': 'WeightedBoxesFusion', 'nms': 'NMSFusion', 'concat': 'ConcatFusion'}


def _cap(fused: list[InstanceData], top: Optional[int]) -> list[InstanceData]:
    """Each image's ``top`` highest-scoring detections (all for None)."""
    if top is None:
        return fused
    return [f[f.scores.topk(top).indices] if len(f) > top else f for f in fused]


def _rows(t: torch.Tensor, width: int = 0) -> torch.Tensor:
    """``t`` as (n, width) rows (``width`` 0: as (n,)), without an operator if it is."""
    if (width and t.dim() == 2 and t.shape[1] == width) or (not width and t.dim() == 1):
        return t
    return t.reshape(-1, width) if width else t.reshape(-1)


class BaseFuser:
    """Merges the detections of several models, image by image (module docstring).

    Args:
        weights: one positive finite weight per model, or None (all 1).

    Raises:
        FusionInputError: a weight that is not a positive finite number.
    """

    #: whether :meth:`fuse_checked` applies ``max_per_img`` itself
    caps_itself = False

    def __init__(self, weights: Optional[Sequence[float]] = None) -> None:
        if weights is not None:
            weights = [float(w) for w in weights]
            check_fusion_input([], [], weights)
        self.weights = weights

    def fuse(self, results: Sequence[InstanceData], img_shape: Sequence[int]) -> InstanceData:
        """One image's detections from every model -> the fused detections."""
        return self.fuse_batch([results], [img_shape])[0]

    def fuse_batch(self, results: Sequence[Sequence[InstanceData]],
                   img_shapes: Sequence[Sequence[int]],
                   max_per_img: Optional[int] = None) -> list[InstanceData]:
        """``results[j][t]``: model t's detections of image j -> one fused set per image.

        Checks the input (one result per model in every image, one weight per
        model, finite boxes and scores); a single model's results pass through.
        ``max_per_img`` keeps each image's highest-scoring fused detections.
        """
        if len(results) != len(img_shapes):
            raise FusionInputError(f'{type(self).__name__}: {len(results)} images of results '
                                   f'but {len(img_shapes)} image shapes')
        if not results:
            return []
        self._check(results)
        if len(results[0]) == 1:
            return _cap([r[0] for r in results], max_per_img)
        fused = self.fuse_checked(results, img_shapes, max_per_img)
        return fused if self.caps_itself else _cap(fused, max_per_img)

    def __call__(self, results, img_shapes) -> list[InstanceData]:
        return self.fuse_batch(results, img_shapes)

    def fuse_checked(self, results: Sequence[Sequence[InstanceData]],
                     img_shapes: Sequence[Sequence[int]],
                     max_per_img: Optional[int] = None) -> list[InstanceData]:
        """A checked batch of two or more models' results; image by image unless a
        fuser does better (a fuser that also applies ``max_per_img`` sets
        ``caps_itself``)."""
        return [self.fuse_image(r, s) for r, s in zip(results, img_shapes)]

    def fuse_image(self, results: Sequence[InstanceData],
                   img_shape: Sequence[int]) -> InstanceData:
        """What a fuser writes: one image's checked results of two or more models
        (module docstring) -> the fused ``InstanceData``, highest scores first."""
        raise NotImplementedError

    def subset(self, models: Sequence[int]) -> BaseFuser:
        """This fuser for the results of ``models`` only (their weights)."""
        twin = copy.copy(self)
        if self.weights is not None:
            twin.weights = [self.weights[t] for t in models]
        return twin

    def _check(self, results: Sequence[Sequence[InstanceData]]) -> None:
        num_models = len(results[0])
        for j, r in enumerate(results):
            if len(r) != num_models:
                raise FusionInputError(f'{type(self).__name__}: image {j} has results of '
                                       f'{len(r)} models, image 0 of {num_models}')
        if self.weights is not None and len(self.weights) != num_models:
            raise FusionInputError(f'{type(self).__name__}: {len(self.weights)} weights for '
                                   f'{num_models} models; give one weight per model')
        check_fusion_input([[m.bboxes for m in r] for r in results],
                           [[m.scores for m in r] for r in results])

    def _weighted_union(self, results: Sequence[InstanceData]) -> InstanceData:
        """All models' detections, scores times ``weight / max(weights)``."""
        scales = ([w / max(self.weights) for w in self.weights] if self.weights is not None
                  else [1.0] * len(results))
        return InstanceData.cat([InstanceData(bboxes=m.bboxes, labels=m.labels,
                                              scores=m.scores * s if s != 1.0 else m.scores)
                                 for m, s in zip(results, scales)])

    @staticmethod
    def _by_score(fused: InstanceData) -> InstanceData:
        return fused[fused.scores.argsort(descending=True, stable=True)] if len(fused) else fused

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'{type(self).__name__}({args})'


@TASK_UTILS.register_module()
class WeightedBoxesFusion(BaseFuser):
    """Weighted Boxes Fusion (Solovyev et al., Image Vis. Comput. 2021), equal to
    ``ensemble_boxes.weighted_boxes_fusion`` (:mod:`divdet.fusion.wbf`).

    Boxes are normalised by the image's width and height, fused, and scaled back.

    Args:
        weights: one weight per model.
        iou_thr: a box joins a cluster whose fused box it overlaps by more.
        skip_box_thr: boxes with a lower score are dropped first.
        conf_type: ``'avg'``, ``'max'``, ``'box_and_model_avg'`` or
            ``'absent_model_aware_avg'``.
        allows_overflow: let ``'avg'`` confidences exceed 1.
        device: ``'same'`` fuses where the boxes are; ``'cpu'`` on the host;
            ``'auto'`` (default) on the host when the boxes are on an
            accelerator and the C++ kernel is built, or the batch has at most
            :data:`HOST_WBF_MAX_IMAGES` images (WBF's sequential steps cost a
            few kernel launches each on a GPU). Results go back to the boxes'
            device.
    """

    def __init__(self, weights: Optional[Sequence[float]] = None, iou_thr: float = 0.55,
                 skip_box_thr: float = 0.0, conf_type: str = 'avg',
                 allows_overflow: bool = False, device: str = 'auto') -> None:
        super().__init__(weights)
        if conf_type not in CONF_TYPES:
            raise ConfigError(f'WeightedBoxesFusion: conf_type must be one of {CONF_TYPES}, '
                              f'found {conf_type!r}')
        if device not in ('auto', 'same', 'cpu'):
            raise ConfigError(f"WeightedBoxesFusion: device must be 'auto', 'same' or 'cpu', "
                              f'found {device!r}')
        check_post_processing(dict(iou_thr=iou_thr, skip_box_thr=skip_box_thr),
                              'WeightedBoxesFusion')
        self.iou_thr = float(iou_thr)
        self.skip_box_thr = float(skip_box_thr)
        self.conf_type = conf_type
        self.allows_overflow = bool(allows_overflow)
        self.device = device

    def fuse_image(self, results, img_shape) -> InstanceData:
        return self.fuse_checked([results], [img_shape])[0]

    #: fuse_checked applies max_per_img (on all images at once)
    caps_itself = True

    def fuse_checked(self, results, img_shapes, max_per_img=None) -> list[InstanceData]:
        """Every image in one call (one C call on the CPU, batched torch elsewhere), on
        the images' detections concatenated: a number of operators and transfers that
        does not grow with the batch or the models. The fused detections come image
        by image, each by descending score, so ``max_per_img`` keeps the first of
        each image."""
        first = results[0][0].bboxes
        host = first.device.type != 'cpu' and (self.device == 'cpu' or (
            self.device == 'auto' and (wbf.HOST_KERNEL or len(results) <= HOST_WBF_MAX_IMAGES)))
        num_models = len(results[0])
        flat = [m for r in results for m in r]  # image-major, then model
        counts = [[len(m) for m in r] for r in results]
        per_image = [sum(c) for c in counts]
        boxes = torch.cat([_rows(m.bboxes, 4) for m in flat])
        scores = torch.cat([_rows(m.scores) for m in flat])
        labels = torch.cat([_rows(m.labels) for m in flat])
        if host:
            boxes, scores, labels = boxes.cpu(), scores.cpu(), labels.cpu()
        device = boxes.device
        sizes = torch.tensor([[float(s[1]), float(s[0])] * 2 for s in img_shapes],
                             dtype=boxes.dtype).to(device, non_blocking=True)  # (N, 4): w h w h
        row_image = torch.arange(len(results)).repeat_interleave(torch.tensor(per_image))
        norm = boxes / sizes[row_image.to(device, non_blocking=True)]
        weights = torch.ones(num_models, dtype=torch.float64) if self.weights is None else \
            torch.as_tensor(self.weights, dtype=torch.float64)
        out_boxes, out_scores, out_labels, fused_counts = wbf.fuse_flat(
            torch.tensor(counts, dtype=torch.long).to(device, non_blocking=True),
            norm.to(torch.float64), scores.to(torch.float64), labels.long(),
            weights.to(device, non_blocking=True), self.iou_thr, self.skip_box_thr,
            self.conf_type, self.allows_overflow)
        fused_counts = fused_counts.tolist()
        if max_per_img is not None and max(fused_counts, default=0) > max_per_img:
            keep = first_of_each(fused_counts, max_per_img).to(device, non_blocking=True)
            out_boxes, out_scores, out_labels = out_boxes[keep], out_scores[keep], out_labels[keep]
            fused_counts = [min(c, max_per_img) for c in fused_counts]
        out_image = torch.arange(len(results)).repeat_interleave(torch.tensor(fused_counts))
        out_boxes = (out_boxes * sizes[out_image.to(device, non_blocking=True)].to(
            out_boxes.dtype)).to(first.dtype)
        out_scores = out_scores.to(results[0][0].scores.dtype)
        if host:
            out_boxes = out_boxes.to(first.device, non_blocking=True)
            out_scores = out_scores.to(first.device, non_blocking=True)
            out_labels = out_labels.to(first.device, non_blocking=True)
        return [InstanceData(bboxes=b, scores=sc, labels=lab) for b, sc, lab in zip(
            out_boxes.split(fused_counts), out_scores.split(fused_counts),
            out_labels.split(fused_counts))]


@TASK_UTILS.register_module()
class NMSFusion(BaseFuser):
    """Class-wise NMS over the union of the models' detections (mmcv's ``nms``
    through ``batched_nms``). Weights scale each model's scores by
    ``weight / max(weights)`` before the NMS.

    Args:
        weights: one weight per model.
        iou_thr: boxes of a label overlapping a higher-scored one by more are dropped.
    """

    def __init__(self, weights: Optional[Sequence[float]] = None, iou_thr: float = 0.5) -> None:
        super().__init__(weights)
        check_post_processing(dict(iou_thr=iou_thr), 'NMSFusion')
        self.iou_thr = float(iou_thr)

    def fuse_image(self, results, img_shape) -> InstanceData:
        union = self._weighted_union(results)
        if len(union) == 0:
            return union
        _, keep = batched_nms(union.bboxes, union.scores, union.labels,
                              dict(type=nms, iou_threshold=self.iou_thr))
        return union[keep]


@TASK_UTILS.register_module()
class SoftNMSFusion(BaseFuser):
    """Class-wise soft-NMS (Bodla et al., ICCV 2017) over the union of the models'
    detections: mmcv's ``soft_nms`` through ``batched_nms``; overlapping boxes
    keep a decayed score instead of being dropped. Weights as in :class:`NMSFusion`.

    Args:
        weights: one weight per model.
        iou_thr: the overlap above which scores decay (``'linear'``, ``'naive'``).
        sigma: the Gaussian's width (``'gaussian'``).
        min_score: boxes whose decayed score falls below are dropped.
        method: ``'linear'``, ``'gaussian'`` or ``'naive'`` (plain NMS).
    """

    METHODS = ('linear', 'gaussian', 'naive')

    def __init__(self, weights: Optional[Sequence[float]] = None, iou_thr: float = 0.3,
                 sigma: float = 0.5, min_score: float = 1e-3, method: str = 'linear') -> None:
        super().__init__(weights)
        if method not in self.METHODS:
            raise ConfigError(f'SoftNMSFusion: method must be one of {self.METHODS}, '
                              f'found {method!r}')
        check_post_processing(dict(iou_thr=iou_thr, sigma=sigma, min_score=min_score),
                              'SoftNMSFusion')
        self.iou_thr, self.sigma, self.min_score = float(iou_thr), float(sigma), float(min_score)
        self.method = method

    def fuse_image(self, results, img_shape) -> InstanceData:
        union = self._weighted_union(results)
        if len(union) == 0:
            return union
        dets, keep = batched_nms(
            union.bboxes.float(), union.scores.float(), union.labels,
            dict(type='soft_nms', iou_threshold=self.iou_thr, sigma=self.sigma,
                 min_score=self.min_score, method=self.method))
        kept = union[keep]
        kept.scores = dets[:, -1].to(union.scores.dtype)
        return self._by_score(kept)


@TASK_UTILS.register_module()
class ConcatFusion(BaseFuser):
    """The union of the models' detections, highest (weighted) scores first."""

    def fuse_image(self, results, img_shape) -> InstanceData:
        return self._by_score(self._weighted_union(results))


def build_fuser(cfg) -> BaseFuser:
    """A fuser from its config (or a fuser, returned as it is).

    ``type`` names a fuser in mmdet's ``TASK_UTILS``; the names of earlier
    versions (``'wbf'``, ``'nms'``, ``'concat'``; :data:`LEGACY_TYPES`) still
    work, with a deprecation warning. Raises ConfigError for anything else.
    """
    if isinstance(cfg, BaseFuser):
        return cfg
    cfg = dict(cfg or {})
    kind = cfg.pop('type', 'WeightedBoxesFusion')
    if kind in LEGACY_TYPES:
        warnings.warn(f"fusion type {kind!r} is deprecated; use type='{LEGACY_TYPES[kind]}'",
                      FutureWarning, stacklevel=2)
        kind = LEGACY_TYPES[kind]
    fuser_cls = TASK_UTILS.get(kind) if isinstance(kind, str) else kind
    if not (isinstance(fuser_cls, type) and issubclass(fuser_cls, BaseFuser)):
        names = sorted(n for n, c in TASK_UTILS.module_dict.items()
                       if isinstance(c, type) and issubclass(c, BaseFuser))
        raise ConfigError(f'fusion type must be a registered fuser ({", ".join(names)}), '
                          f'found {kind!r}')
    try:
        return fuser_cls(**cfg)
    except TypeError as e:
        raise ConfigError(f'{fuser_cls.__name__}: {e} (a config that inherits another '
                          "fuser's settings needs _delete_=True)") from None


__all__ = ['BaseFuser', 'WeightedBoxesFusion', 'NMSFusion', 'SoftNMSFusion', 'ConcatFusion',
           'build_fuser', 'HOST_WBF_MAX_IMAGES', 'LEGACY_TYPES']
