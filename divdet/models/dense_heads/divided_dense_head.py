"""DividedDenseHead: S stock mmdet dense heads and the member protocol written once.

A divided detector (:class:`~divdet.models.detectors.DividedSingleStageDetector`)
runs each member's network whole and calls its head's members through this
protocol; every divided dense head provides it:

=============================  ==================================================
``head_of(i)``                 the mmdet head member ``i`` uses
``forward_member(i, feats)``   member ``i``'s raw outputs (``head(feats)``)
``loss_members(outs, samples)``  the loss dict: every member's losses (suffixed
                               ``_m{i}``) and the co-training term ``loss_cot``
``predict_members(outs, samples, rescale, indices)``
                               per member, per image, its detections
``fuse_members(members, samples, rescale, indices)``
                               per image, the fused detections (``test_cfg.ensemble``)
``share_head``                 one head for all members
=============================  ==================================================

:class:`DividedDenseHead` implements it for any mmdet dense head whose
``loss_by_feat`` and ``predict_by_feat`` take its forward outputs (``AnchorHead``
and ``AnchorFreeHead`` subclasses: RetinaNet, FCOS, ATSS, SSD, ...). What differs
between heads is a few hooks:

- :meth:`cot_scores`: the scores the co-training term compares (the class scores
  of every anchor or point); the term's distribution follows the head's classifier
  (``use_sigmoid_cls``: a Bernoulli per class, else one softmax over the classes);
- :attr:`share_targets`: whether the members' targets are assigned once per batch
  (targets that depend on anchors or points and ground truth only);
- :meth:`loss_members`, which a head with a batched loss overrides
  (:class:`~divdet.models.dense_heads.DividedSSDHead`); the post-processing of
  all members and images is batched for every head that uses mmdet's
  ``BaseDenseHead.predict_by_feat`` with a box coder it covers (SSD, RetinaNet,
  FCOS, ATSS), others run mmdet's per image.

Adding another mmdet dense head takes a config: ``dict(type='DividedDenseHead',
head=dict(type='GFLHead', ...))``.

Widths: a member head's ``feat_channels`` (its stacked convs) is the undivided
width divided by ``S ** width_power`` (0.5, the backbones' rule), rounded to a
multiple of the head's GroupNorm groups (or 8); its ``in_channels`` is the divided
neck's member width.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import partial
from typing import Iterator, Optional, Sequence

import torch
from mmdet.models.utils import unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import InstanceList
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.model import ModuleList
from mmengine.registry import DefaultScope
from torch import Tensor

from divdet.datasets.transforms.det_member_views import VIEWS_KEY
from divdet.fusion import build_fuser
from divdet.models.backbones.division import divide_width
from divdet.models.dense_heads.batched_post_process import batched_post_process, supports_batched
from divdet.models.dense_heads.batched_ssd_loss import (
    batched_get_anchors,
    batched_get_targets,
    flatten_outputs,
    supports_batched_targets,
)
from divdet.models.divided.part import DividedPart
from divdet.models.losses.cotraining_loss import member_loss_totals
from divdet.models.utils.nms import resolve_nms_cfg
from divdet.registry import register_model
from divdet.utils.errors import ConfigError

#: The reference's fusion (the paper's detection experiments).
DEFAULT_ENSEMBLE = dict(type='WeightedBoxesFusion', iou_thr=0.5, skip_box_thr=1e-4,
                        conf_type='avg')

MemberFeats = Sequence[Sequence[Tensor]]


def mirror_outputs(outs: tuple, mirrored: Tensor) -> tuple:
    """A member's outputs with the images in ``mirrored`` mirrored.

    For a view that was flipped horizontally, the output at column ``w`` belongs
    to the anchor at column ``W - 1 - w`` of the unflipped image, and its x
    offset points the other way. So every output's columns are reversed and the
    box deltas' x negated (the second output; exact for ``DeltaXYWHBBoxCoder`` with
    a zero x mean and mirror-symmetric anchors, :meth:`DividedDenseHead.check_mirroring`).
    The map is its own inverse.

    Args:
        outs: levels of (N, A * K, H, W) scores, (N, A * 4, H, W) deltas, and any
            further per-location outputs (centerness, ...).
        mirrored: (N,) bools, the images to mirror.
    """
    where = mirrored.view(-1, 1, 1, 1)
    result = []
    for k, levels in enumerate(outs):
        flipped = []
        for t in levels:
            f = t.flip(-1)
            if k == 1:  # box deltas: negate dx
                f = f.unflatten(1, (-1, 4))
                f = torch.cat([-f[:, :, :1], f[:, :, 1:]], 2).flatten(1, 2)
            flipped.append(torch.where(where, f, t))
        result.append(flipped)
    return tuple(result)


def divide_head_widths(head: dict, num_members: int, width_power: float) -> dict:
    """``head`` with ``feat_channels`` divided by ``S ** width_power``, rounded to a
    multiple of its GroupNorm groups (or 8)."""
    if 'feat_channels' not in head or num_members == 1:
        return head
    norm = head['norm_cfg'] if 'norm_cfg' in head else _default(head.get('type'), 'norm_cfg')
    norm = norm or {}
    divisor = int(norm.get('num_groups', 8)) if norm.get('type') == 'GN' else 8
    return dict(head, feat_channels=divide_width(head['feat_channels'], num_members,
                                                 width_power, divisor))


def _default(head_type, name: str):
    """The default of argument ``name`` of the mmdet head class ``head_type``."""
    import inspect
    cls = MODELS.get(head_type) if isinstance(head_type, str) else head_type
    if cls is None:
        return None
    for klass in inspect.getmro(cls):
        param = inspect.signature(klass.__init__).parameters.get(name)
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return None


@register_model
class DividedDenseHead(DividedPart):
    """S stock mmdet dense heads (or one shared), their losses summed, co-training
    across members, and the members' detections fused at test time (module doc).

    Input/output contract::

        forward(x: tuple of S tuples of (N, C_l, H_l, W_l))
            -> tuple of S head outputs (each the mmdet head's forward output)
        loss(x, data_samples) -> dict: per-member losses (suffixed ``_m{i}`` when
            S > 1) and ``loss_cot``
        predict(x, data_samples) -> list of InstanceData (fused) per image

    Args:
        num_members: the split factor S.
        head: config of one member's head (any mmdet dense head), with the
            undivided widths (``feat_channels``).
        in_channels: input channels of one member's head (the divided neck's
            ``member_out_channels``); overrides ``head.in_channels``.
        share_head: one head for all members.
        loss_cot: config of the co-training loss; None disables it. Its
            ``activation`` follows the head's classifier unless given.
        width_power: member ``feat_channels`` = undivided / ``S ** width_power``.
        batched_targets: assign an ``AnchorHead``'s targets (``MaxIoUAssigner``,
            ``PseudoSampler``: RetinaNet, SSD's per-image route) for all images in
            batched calls, equal to mmdet's; False runs mmdet's ``get_targets``.
        train_cfg, test_cfg: the head's configs; ``test_cfg.ensemble`` is the fuser
            that merges the members' detections (:mod:`divdet.fusion`; default
            :data:`DEFAULT_ENSEMBLE`) and ``max_per_img`` bounds the fused result.
    """

    #: whether the members' targets are assigned once per batch (:meth:`shared_targets`)
    share_targets = True

    def __init__(self, num_members: int, head: dict, in_channels: Optional[Sequence[int]] = None,
                 share_head: bool = False,
                 loss_cot: Optional[dict] = dict(type='CoTrainingLoss', loss_weight=0.5),
                 width_power: float = 0.5, batched_targets: bool = True,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(num_members, init_cfg)
        self.share_head = share_head
        self.batched_targets = bool(batched_targets)
        # mmdet's heads read their configs by attribute (cfg.min_bbox_size).
        train_cfg = ConfigDict(train_cfg) if train_cfg is not None else None
        test_cfg = ConfigDict(test_cfg) if test_cfg is not None else None
        head = divide_head_widths(dict(head, train_cfg=train_cfg, test_cfg=test_cfg),
                                  num_members, width_power)
        if in_channels is not None:
            head['in_channels'] = self._member_in_channels(head, in_channels)
        num_heads = 1 if share_head else num_members
        with DefaultScope.overwrite_default_scope('mmdet'):
            self.members = ModuleList(MODELS.build(head) for _ in range(num_heads))
            if loss_cot and num_members > 1:
                loss_cot = dict(loss_cot)
                loss_cot.setdefault('activation', 'sigmoid' if getattr(
                    self.members[0], 'use_sigmoid_cls', False) else 'softmax')
                self.loss_cot = MODELS.build(loss_cot)
            else:
                self.loss_cot = None
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if num_members > 1:
            self.fuser()  # a wrong fusion config fails here, not after a test epoch
        self.num_classes = self.members[0].num_classes
        self._mirror_checked: set = set()

    @staticmethod
    def _member_in_channels(head: dict, in_channels: Sequence[int]):
        """A tuple per level (``SSDHead``), or one width for heads that take an int."""
        if isinstance(head.get('in_channels'), int):
            widths = set(in_channels)
            if len(widths) != 1:
                raise ConfigError(f'{head.get("type")} takes one input width, but the neck '
                                  f'gives {tuple(in_channels)} per level')
            return widths.pop()
        return tuple(in_channels)

    def head_of(self, i: int):
        """The mmdet head that member ``i`` uses."""
        return self.members[0 if self.share_head else i]

    # ---- the hooks a head may change -----------------------------------------------------

    def cot_scores(self, i: int, outs: tuple) -> Tensor:
        """The scores of member ``i`` that the co-training term compares:
        (N, anchors or points, classifier channels)."""
        head = self.head_of(i)
        return flatten_outputs(outs[0], head.cls_out_channels)

    # ---- one member's share: what a detector running each member whole calls ----------

    def forward_member(self, i: int, feats: Sequence[Tensor]) -> tuple:
        """Member ``i``'s raw outputs from its features."""
        return self.head_of(i)(feats)

    def loss_member(self, i: int, outs: tuple, batch_data_samples: SampleList) -> tuple:
        """Member ``i``'s losses (mmdet's ``loss_by_feat``) and its co-training scores.

        Call inside :meth:`shared_targets` so that the members assign targets once.
        """
        with torch.profiler.record_function('divdet::loss'):  # see apis.complexity
            gt_instances, gt_ignore, img_metas = unpack_gt_instances(batch_data_samples)
            outs = self.unmirror(i, outs, batch_data_samples)
            return (self.head_of(i).loss_by_feat(*outs, gt_instances, img_metas, gt_ignore),
                    self.cot_scores(i, outs))

    def gather_losses(self, results: Sequence[tuple]) -> dict:
        """The members' :meth:`loss_member` results -> the loss dict of :meth:`loss`."""
        with torch.profiler.record_function('divdet::loss'):  # see apis.complexity
            losses, scores = {}, []
            for i, (member, member_scores) in enumerate(results):
                suffix = f'_m{i}' if self.num_members > 1 else ''
                losses.update({f'{k}{suffix}': v for k, v in member.items()})
                scores.append(member_scores)
            if self.loss_cot is not None:
                if getattr(self.loss_cot, 'needs_member_losses', False):
                    losses['loss_cot'] = self.loss_cot(
                        scores, member_losses=member_loss_totals([m for m, _ in results]))
                else:
                    losses['loss_cot'] = self.loss_cot(scores)
            return losses

    def loss_members(self, outs: Sequence[tuple], batch_data_samples: SampleList) -> dict:
        """The loss dict of :meth:`loss` from every member's outputs."""
        with self.shared_targets():
            return self.gather_losses([self.loss_member(i, o, batch_data_samples)
                                       for i, o in enumerate(outs)])

    def predict_member(self, i: int, outs: tuple, batch_data_samples: SampleList,
                       rescale: bool = False, mirrored: bool = True) -> InstanceList:
        """Member ``i``'s detections per image (mmdet's ``predict_by_feat``).

        ``test_cfg.nms`` of ``type='nms'`` runs :func:`divdet.models.utils.nms.nms`
        (mmcv's result, computed without holding the GIL, so members in threads
        suppress concurrently).
        """
        img_metas = [s.metainfo for s in batch_data_samples]
        head = self.head_of(i)
        if mirrored:
            outs = self.unmirror(i, outs, batch_data_samples)
        return head.predict_by_feat(*outs, batch_img_metas=img_metas,
                                    cfg=resolve_nms_cfg(head.test_cfg), rescale=rescale)

    def predict_members(self, outs: Sequence[tuple], batch_data_samples: SampleList,
                        rescale: bool = False,
                        indices: Optional[Sequence[int]] = None) -> list[InstanceList]:
        """Detections per image of every member whose outputs are in ``outs``
        (members ``indices``, by default the first ``len(outs)``).

        Decoding, score filter and NMS of all of them run in batched calls
        (:mod:`~divdet.models.dense_heads.batched_post_process`, equal to mmdet's
        ``predict_by_feat``), whose number does not grow with S or the batch; a
        head or test config that path does not cover runs mmdet's per-image
        :meth:`predict_member` for each member (logged once, with the reason).
        """
        indices = list(range(len(outs))) if indices is None else list(indices)
        head = self.head_of(indices[0])
        reason = supports_batched(head, head.test_cfg)
        with torch.profiler.record_function('divdet::post_process'):  # see apis.complexity
            if reason is None:
                outs = [self.unmirror(i, o, batch_data_samples) for i, o in zip(indices, outs)]
                return batched_post_process(head, outs, [s.metainfo for s in batch_data_samples],
                                            head.test_cfg, rescale)
            if reason != getattr(self, '_per_image_reason', None):
                self._per_image_reason = reason  # logged once per reason
                print_log(f'{type(self).__name__}: post-processing per image and member '
                          f"(mmdet's predict_by_feat), not batched: {reason}",
                          logger='current')
            return [self.predict_member(i, o, batch_data_samples, rescale)
                    for i, o in zip(indices, outs)]

    def unmirror(self, i: int, outs: tuple, batch_data_samples: SampleList) -> tuple:
        """Member ``i``'s outputs in the geometry of the unmirrored images.

        Images whose ``member_views`` metainfo marks member ``i``'s view as
        mirrored (:class:`~divdet.datasets.transforms.DetMemberViews` with
        ``flip_prob``) get :func:`mirror_outputs`; the others are unchanged.
        """
        views = [s.metainfo.get(VIEWS_KEY) for s in batch_data_samples]
        flags = [bool(v[i]) if v is not None and i < len(v) else False for v in views]
        if not any(flags):
            return outs
        self.check_mirroring(i, [o.shape[-2:] for o in outs[0]], batch_data_samples, flags)
        return mirror_outputs(outs, torch.tensor(flags, device=outs[0][0].device))

    def check_mirroring(self, i: int, featmap_sizes: list, batch_data_samples: SampleList,
                        flags: list) -> None:
        """Refuse mirrored views whose outputs cannot be mirrored back exactly.

        Raises:
            ConfigError: the head has no anchors with a zero-mean
                ``DeltaXYWHBBoxCoder``, a mirrored image does not fill the padded
                batch width, or the anchors are not mirror-symmetric about the
                image centre.
        """
        head = self.head_of(i)
        width = None
        for sample, flag in zip(batch_data_samples, flags):
            meta = sample.metainfo
            pad_w = meta.get('batch_input_shape', meta['img_shape'])[1]
            if flag and meta['img_shape'][1] != pad_w:
                raise ConfigError(f'a mirrored member view ({meta.get("img_path", "an image")}) '
                                  f'is {meta["img_shape"][1]} px wide but padded to {pad_w}; '
                                  'mirrored views need images that fill the batch width')
            width = pad_w
        key = (id(head), tuple(tuple(s) for s in featmap_sizes), width)
        if key in self._mirror_checked:
            return
        coder = getattr(head, 'bbox_coder', None)
        if (type(coder).__name__ != 'DeltaXYWHBBoxCoder' or float(coder.means[0]) != 0.0
                or not hasattr(head, 'prior_generator')
                or not hasattr(head.prior_generator, 'grid_priors')):
            raise ConfigError(f'mirrored member views need anchors and a DeltaXYWHBBoxCoder '
                              f'with zero x mean, found {type(coder).__name__} with means '
                              f'{getattr(coder, "means", None)}')
        priors = head.prior_generator.grid_priors(featmap_sizes, device='cpu')
        for level, (anchors, (h, w)) in enumerate(zip(priors, featmap_sizes)):
            grid = anchors.view(h, w, -1, 4)
            mirror = torch.stack([width - grid[..., 2], grid[..., 1], width - grid[..., 0],
                                  grid[..., 3]], -1).flip(1)
            if not torch.allclose(mirror, grid, atol=1e-3):
                raise ConfigError(f'mirrored member views: the anchors of level {level} '
                                  f'({h}x{w} at width {width}) are not mirror-symmetric about '
                                  'the image centre (feature map width x stride must equal the '
                                  'input width); use flip_prob=0 for this input size')
        self._mirror_checked.add(key)

    def fuse_members(self, members: Sequence[InstanceList], batch_data_samples: SampleList,
                     rescale: bool = False,
                     indices: Optional[Sequence[int]] = None) -> InstanceList:
        """Fused detections per image from the members' (``test_cfg.ensemble``).

        ``members`` may be some of the S members: those with ``indices``, or by
        default the first ``len(members)``; WBF's member ``weights`` are then
        those members' weights.
        """
        if len(members) == 1:
            return members[0]
        img_metas = [s.metainfo for s in batch_data_samples]
        fuser = self.fuser().subset(list(indices or range(len(members))))
        top = (self.test_cfg or {}).get('max_per_img', 200)
        with torch.profiler.record_function('divdet::fusion'):  # see apis.complexity
            return fuser.fuse_batch(
                [[m[j] for m in members] for j in range(len(img_metas))],
                [meta['ori_shape' if rescale else 'img_shape'] for meta in img_metas],
                max_per_img=top)

    def fuser(self):
        """The fuser of ``test_cfg.ensemble`` (built once per config)."""
        cfg = (self.test_cfg or {}).get('ensemble', DEFAULT_ENSEMBLE)
        key = repr(cfg)
        if getattr(self, '_fuser_key', None) != key:
            fuser = build_fuser(cfg)
            weights = getattr(fuser, 'weights', None)
            if weights is not None and len(weights) != self.num_members:
                raise ConfigError(f'test_cfg.ensemble.weights: expected one weight per member '
                                  f'({self.num_members}), found {len(weights)}')
            self._fuser, self._fuser_key = fuser, key
        return self._fuser

    # ---- all members ---------------------------------------------------------------

    def loss(self, x: MemberFeats, batch_data_samples: SampleList) -> dict:
        """Sum of the members' losses plus the co-training term."""
        return self.loss_members(self.run_members(x), batch_data_samples)

    @contextmanager
    def shared_targets(self) -> Iterator[None]:
        """Assign targets once per batch, for all members (:attr:`share_targets`), and
        for ``AnchorHead`` targets with ``MaxIoUAssigner`` and ``PseudoSampler``
        (RetinaNet, ...) for all images in batched calls
        (:func:`~divdet.models.dense_heads.batched_ssd_loss.batched_get_targets`, equal
        to mmdet's ``get_targets``; others run mmdet's image by image).

        The members' heads are built from one config: same anchors or points, same
        assigner, same ground truth; for heads whose targets do not depend on the
        predictions (max-IoU and ATSS assignment, FCOS's points, a pseudo sampler),
        the first ``get_targets`` result of a ``loss`` call is handed to the other
        members, and mmdet's ``loss_by_feat`` runs unchanged for each. Its outputs
        are only read, never written in place.
        """
        heads = list(self.members)
        batched = self.batched_targets and supports_batched_targets(heads[0]) is None
        share = len(heads) > 1 and self.share_targets
        if not batched and not share:
            yield
            return
        cache, lock = [], threading.Lock()  # members may run in threads

        def shared(head, original):
            def compute(*args, **kwargs):
                if batched:
                    return batched_get_targets(head, original, *args, **kwargs)
                return original(*args, **kwargs)

            def get_targets(*args, **kwargs):
                if not share:
                    return compute(*args, **kwargs)
                with lock:
                    if not cache:
                        cache.append(compute(*args, **kwargs))
                return cache[0]
            return get_targets

        for head in heads:  # instance attributes, for this call
            head.get_targets = shared(head, head.get_targets)
            if batched:
                head.get_anchors = partial(batched_get_anchors, head)
        try:
            yield
        finally:
            for head in heads:
                del head.get_targets
                if batched:
                    del head.get_anchors

    def predict(self, x: MemberFeats, batch_data_samples: SampleList,
                rescale: bool = False) -> InstanceList:
        """Fused detections per image."""
        return self.predict_with_members(x, batch_data_samples, rescale)[0]

    def predict_with_members(self, x: MemberFeats, batch_data_samples: SampleList,
                             rescale: bool = False) -> tuple[InstanceList, list[InstanceList]]:
        """Fused detections and every member's own detections.

        Returns:
            (fused results per image, [member i's results per image for i < S]).
        """
        members = self.predict_members(self.run_members(x), batch_data_samples, rescale)
        return self.fuse_members(members, batch_data_samples, rescale), members
