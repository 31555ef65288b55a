"""DividedSSDHead: one mmdet ``SSDHead`` per member (or one shared), losses summed,
co-training across members, and the members' detections fused at test time."""
from __future__ import annotations

import threading
from contextlib import contextmanager
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
from divdet.models.dense_heads.batched_post_process import batched_post_process, supports_batched
from divdet.models.dense_heads.batched_ssd_loss import (
    flatten_outputs,
    ssd_losses,
    ssd_targets,
    supports_batched_loss,
)
from divdet.models.losses.cotraining_loss import member_loss_totals
from divdet.models.utils.nms import resolve_nms_cfg
from divdet.models.utils.runtime import DividedPart
from divdet.registry import register_model
from divdet.utils.errors import ConfigError

#: The reference's fusion (the paper's detection experiments).
DEFAULT_ENSEMBLE = dict(type='WeightedBoxesFusion', iou_thr=0.5, skip_box_thr=1e-4,
                        conf_type='avg')

MemberFeats = Sequence[Sequence[Tensor]]


def mirror_outputs(outs: tuple, mirrored: Tensor) -> tuple[list, list]:
    """A member's (cls_scores, bbox_preds) with the images in ``mirrored`` mirrored.

    For a view that was flipped horizontally, the output at column ``w`` belongs
    to the anchor at column ``W - 1 - w`` of the unflipped image, and its x
    offset points the other way. So the columns are reversed and the x delta
    negated (exact for ``DeltaXYWHBBoxCoder`` with a zero x mean, and when the
    anchors are mirror-symmetric; :meth:`DividedSSDHead.check_mirroring`). The
    map is its own inverse.

    Args:
        outs: levels of (N, A * K, H, W) scores and (N, A * 4, H, W) deltas.
        mirrored: (N,) bools, the images to mirror.
    """
    cls_scores, bbox_preds = outs
    where = mirrored.view(-1, 1, 1, 1)
    cls = [torch.where(where, c.flip(-1), c) for c in cls_scores]
    boxes = []
    for b in bbox_preds:
        f = b.flip(-1).unflatten(1, (-1, 4))
        f = torch.cat([-f[:, :, :1], f[:, :, 1:]], 2).flatten(1, 2)
        boxes.append(torch.where(where, f, b))
    return cls, boxes


@register_model
class DividedSSDHead(DividedPart):
    """SSD heads for S members.

    Every member has its own stock mmdet ``SSDHead`` (``share_head=True``
    applies one head to every member's features, as the reference does).
    The loss is the sum of the members' SSD losses plus the co-training term
    over each anchor's (C+1)-way class distribution; targets, hard negatives
    and losses of all members and images run in batched calls
    (:mod:`~divdet.models.dense_heads.batched_ssd_loss`, equal to mmdet's
    ``SSDHead.loss_by_feat``), or per member and image through mmdet's own
    code for configs that path does not cover (logged once). At test
    time each member decodes and runs NMS as mmdet's SSD does, and the members'
    detections are fused (``test_cfg.ensemble``).

    Input/output contract::

        forward(x: tuple of S tuples of (N, C_l, H_l, W_l))
            -> tuple of S (cls_scores, bbox_preds), each a list over levels of
               (N, A_l * (num_classes + 1), H_l, W_l) and (N, A_l * 4, H_l, W_l)
        loss(x, data_samples) -> dict: per-member ``loss_cls``/``loss_bbox``
            (suffixed ``_m{i}`` when S > 1; a tensor, the sum over the images,
            or mmdet's per-image list on its per-image path) and ``loss_cot``
        predict(x, data_samples) -> list of InstanceData (fused) per image

    Args:
        num_members: the split factor S.
        head: config of one member's head (an mmdet ``SSDHead``).
        in_channels: input channels of one member's head (the divided neck's
            ``member_out_channels``); overrides ``head.in_channels``.
        share_head: one head for all members.
        loss_cot: config of the co-training loss; None disables it.
        batched_loss: compute the members' SSD losses in batched calls
            (:mod:`~divdet.models.dense_heads.batched_ssd_loss`) where the config
            allows; False runs mmdet's per-image ``loss_by_feat`` for each member
            (the same losses, more operators).
        train_cfg: SSD training config (assigner, neg_pos_ratio, ...).
        test_cfg: SSD test config plus ``ensemble``, the fuser that merges
            the members' detections (:mod:`divdet.fusion`; default
            :data:`DEFAULT_ENSEMBLE`), e.g. ``dict(type='WeightedBoxesFusion',
            iou_thr=0.5, conf_type='avg', weights=[1, 1])``, ``NMSFusion``,
            ``SoftNMSFusion`` or ``ConcatFusion``; ``max_per_img`` bounds the
            fused result.
    """

    def __init__(self, num_members: int, head: dict, in_channels: Optional[Sequence[int]] = None,
                 share_head: bool = False,
                 loss_cot: Optional[dict] = dict(type='CoTrainingLoss', loss_weight=0.5),
                 batched_loss: bool = True,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(num_members, init_cfg)
        self.share_head = share_head
        self.batched_loss = bool(batched_loss)
        # mmdet's heads read their configs by attribute (cfg.min_bbox_size).
        train_cfg = ConfigDict(train_cfg) if train_cfg is not None else None
        test_cfg = ConfigDict(test_cfg) if test_cfg is not None else None
        head = dict(head, train_cfg=train_cfg, test_cfg=test_cfg)
        if in_channels is not None:
            head['in_channels'] = tuple(in_channels)
        num_heads = 1 if share_head else num_members
        with DefaultScope.overwrite_default_scope('mmdet'):
            self.members = ModuleList(MODELS.build(head) for _ in range(num_heads))
            self.loss_cot = MODELS.build(loss_cot) if loss_cot and num_members > 1 else None
        for member in self.members:
            # mmdet 3.3.0's BaseDenseHead._predict_by_feat_single reads
            # self.loss_cls, which SSDHead never sets (open-mmlab/mmdetection#11780).
            if not hasattr(member, 'loss_cls'):
                member.loss_cls = None
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if num_members > 1:
            self.fuser()  # a wrong fusion config fails here, not after a test epoch
        self.num_classes = self.members[0].num_classes
        self._mirror_checked: set = set()

    def head_of(self, i: int):
        """The SSDHead that member ``i`` uses."""
        return self.members[0 if self.share_head else i]

    # ---- one member's share: what a detector running each member whole calls ----------

    def forward_member(self, i: int, feats: Sequence[Tensor]) -> tuple[list, list]:
        """Member ``i``'s (cls_scores, bbox_preds) from its features."""
        return self.head_of(i)(feats)

    def loss_member(self, i: int, outs: tuple, batch_data_samples: SampleList) -> tuple:
        """Member ``i``'s SSD losses and flattened class scores (for :meth:`gather_losses`).

        Call inside :meth:`shared_targets` so that the members assign targets once.
        """
        with torch.profiler.record_function('divdet::loss'):  # see apis.complexity
            gt_instances, gt_ignore, img_metas = unpack_gt_instances(batch_data_samples)
            head = self.head_of(i)
            outs = self.unmirror(i, outs, batch_data_samples)
            return (head.loss_by_feat(*outs, gt_instances, img_metas, gt_ignore),
                    flatten_outputs(outs[0], head.cls_out_channels))

    def gather_losses(self, results: Sequence[tuple]) -> dict:
        """The members' :meth:`loss_member` results -> the loss dict of :meth:`loss`."""
        with torch.profiler.record_function('divdet::loss'):  # see apis.complexity
            return self._gather_losses(results)

    def _gather_losses(self, results: Sequence[tuple]) -> dict:
        losses, flat_cls = {}, []
        for i, (member, flat) in enumerate(results):
            suffix = f'_m{i}' if self.num_members > 1 else ''
            losses.update({f'{k}{suffix}': v for k, v in member.items()})
            flat_cls.append(flat)
        if self.loss_cot is not None:
            if getattr(self.loss_cot, 'needs_member_losses', False):
                losses['loss_cot'] = self.loss_cot(
                    flat_cls, member_losses=member_loss_totals([m for m, _ in results]))
            else:
                losses['loss_cot'] = self.loss_cot(flat_cls)
        return losses

    def predict_member(self, i: int, outs: tuple, batch_data_samples: SampleList,
                       rescale: bool = False, mirrored: bool = True) -> InstanceList:
        """Member ``i``'s detections per image (mmdet's SSD decoding and NMS).

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
        """Detections per image of every member whose head outputs are in ``outs``.

        ``outs`` are members ``indices`` (default: the first ``len(outs)``). Decoding,
        score filter and NMS of all of them run in batched calls
        (:mod:`~divdet.models.dense_heads.batched_post_process`), whose number does
        not grow with S or the batch; a head or test config that path does not
        cover runs mmdet's per-image :meth:`predict_member` for each member.
        """
        indices = list(range(len(outs))) if indices is None else list(indices)
        with torch.profiler.record_function('divdet::post_process'):  # see apis.complexity
            outs = [self.unmirror(i, o, batch_data_samples) for i, o in zip(indices, outs)]
            head = self.head_of(indices[0])
            reason = supports_batched(head, head.test_cfg)
            if reason is not None:
                if reason != getattr(self, '_per_image_reason', None):
                    self._per_image_reason = reason  # logged once per reason
                    print_log(f'{type(self).__name__}: post-processing per image and member '
                              f"(mmdet's predict_by_feat), not batched: {reason}",
                              logger='current')
                return [self.predict_member(i, o, batch_data_samples, rescale, mirrored=False)
                        for i, o in zip(indices, outs)]
            return batched_post_process(head, outs, [s.metainfo for s in batch_data_samples],
                                        head.test_cfg, rescale)

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
            ConfigError: the box coder is not a zero-mean ``DeltaXYWHBBoxCoder``, a
                mirrored image does not fill the padded batch width, or the anchors
                are not mirror-symmetric about the image centre.
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
        coder = head.bbox_coder
        if type(coder).__name__ != 'DeltaXYWHBBoxCoder' or float(coder.means[0]) != 0.0:
            raise ConfigError(f'mirrored member views need a DeltaXYWHBBoxCoder with zero x '
                              f'mean, found {type(coder).__name__} with means '
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
        """Sum of the members' SSD losses plus the co-training term."""
        return self.loss_members(self.run_members(x), batch_data_samples)

    def loss_members(self, outs: Sequence[tuple], batch_data_samples: SampleList) -> dict:
        """The loss dict of :meth:`loss` from every member's (cls_scores, bbox_preds).

        Targets once for the batch, then every member's SSD loss in the same
        batched calls (:mod:`~divdet.models.dense_heads.batched_ssd_loss`), and the
        co-training term from the same flattened scores. A config that path does
        not cover runs mmdet's ``loss_by_feat`` per member (:meth:`loss_member`).
        """
        head = self.head_of(0)
        reason = supports_batched_loss(head) if self.batched_loss else 'batched_loss=False'
        if reason is not None:
            if reason != getattr(self, '_per_image_loss_reason', None):
                self._per_image_loss_reason = reason  # logged once per reason
                print_log(f"{type(self).__name__}: SSD loss per image and member (mmdet's "
                          f'loss_by_feat), not batched: {reason}', logger='current')
            with self.shared_targets():
                return self.gather_losses([self.loss_member(i, o, batch_data_samples)
                                           for i, o in enumerate(outs)])
        with torch.profiler.record_function('divdet::loss'):  # see apis.complexity
            outs = [self.unmirror(i, o, batch_data_samples) for i, o in enumerate(outs)]
            gt_instances, gt_ignore, img_metas = unpack_gt_instances(batch_data_samples)
            cls = torch.stack([flatten_outputs(o[0], head.cls_out_channels) for o in outs])
            boxes = torch.stack([flatten_outputs(o[1], 4) for o in outs])
            targets = ssd_targets(head, [c.shape[-2:] for c in outs[0][0]], gt_instances,
                                  img_metas, gt_ignore, device=cls.device)
            loss_cls, loss_bbox = ssd_losses(head, cls, boxes, targets)
            members = [dict(loss_cls=c, loss_bbox=b)
                       for c, b in zip(loss_cls.unbind(), loss_bbox.unbind())]
            return self._gather_losses(list(zip(members, cls.unbind())))

    @contextmanager
    def shared_targets(self) -> Iterator[None]:
        """Assign SSD targets once per batch, for all members.

        The members' heads are built from one config: same anchors, same
        assigner, same ground truth, and SSD's targets do not depend on the
        predictions (max-IoU assignment, pseudo sampler). So the first
        ``get_targets`` result of a ``loss`` call is handed to the other
        members, and mmdet's ``loss_by_feat`` runs unchanged for each. Its
        outputs are only read (concatenated), never written in place.
        """
        heads = list(self.members)
        if len(heads) < 2:
            yield
            return
        cache, lock = [], threading.Lock()  # members may run in threads

        def shared(original):
            def get_targets(*args, **kwargs):
                with lock:
                    if not cache:
                        cache.append(original(*args, **kwargs))
                return cache[0]
            return get_targets

        for head in heads:
            head.get_targets = shared(head.get_targets)  # instance attribute, for this call
        try:
            yield
        finally:
            for head in heads:
                del head.get_targets

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
