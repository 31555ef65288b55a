"""DividedSSDHead: one mmdet ``SSDHead`` per member (or one shared), with batched
losses and post-processing for all members and images."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmdet.models.utils import unpack_gt_instances
from mmdet.structures import SampleList
from mmengine.logging import print_log

from divdet.models.dense_heads.batched_ssd_loss import (
    flatten_outputs,
    ssd_losses,
    ssd_targets,
    supports_batched_loss,
)
from divdet.models.dense_heads.divided_dense_head import (
    DEFAULT_ENSEMBLE,
    DividedDenseHead,
    MemberFeats,
    mirror_outputs,
)
from divdet.registry import register_model

__all__ = ['DEFAULT_ENSEMBLE', 'DividedSSDHead', 'MemberFeats', 'mirror_outputs']


@register_model
class DividedSSDHead(DividedDenseHead):
    """SSD heads for S members: :class:`DividedDenseHead` with batched calls.

    Every member has its own stock mmdet ``SSDHead`` (``share_head=True``
    applies one head to every member's features, as the reference does). The
    loss is the sum of the members' SSD losses plus the co-training term over
    each anchor's (C+1)-way class distribution; targets, hard negatives and
    losses of all members and images run in batched calls
    (:mod:`~divdet.models.dense_heads.batched_ssd_loss`, equal to mmdet's
    ``SSDHead.loss_by_feat``), and so do the decoding, score filter and NMS
    (:mod:`~divdet.models.dense_heads.batched_post_process`); configs those paths
    do not cover run mmdet's per-image code (logged once). The members'
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
        batched_loss: compute the members' SSD losses in batched calls where the
            config allows; False runs mmdet's per-image ``loss_by_feat`` and
            ``get_targets`` for each member (the same losses, more operators).
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
        super().__init__(num_members, head, in_channels, share_head, loss_cot,
                         batched_targets=batched_loss, train_cfg=train_cfg,
                         test_cfg=test_cfg, init_cfg=init_cfg)
        self.batched_loss = bool(batched_loss)
        for member in self.members:
            # mmdet 3.3.0's BaseDenseHead._predict_by_feat_single reads
            # self.loss_cls, which SSDHead never sets (open-mmlab/mmdetection#11780).
            if not hasattr(member, 'loss_cls'):
                member.loss_cls = None

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
            return super().loss_members(outs, batch_data_samples)
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
        return self.gather_losses(list(zip(members, cls.unbind())))
