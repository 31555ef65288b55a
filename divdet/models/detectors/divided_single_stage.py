"""DividedSingleStageDetector: mmdet's SingleStageDetector with S set once."""
from __future__ import annotations

from typing import Optional

from mmdet.models.detectors import SingleStageDetector
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor

from divdet.fusion import build_fuser
from divdet.models.divided.owner import DividedOwner
from divdet.models.divided.runtime import whole_member
from divdet.registry import register_model
from divdet.utils.errors import ConfigError
from divdet.utils.ranges import check_post_processing


def check_test_members(members, num_members: int) -> Optional[tuple[int, ...]]:
    """``test_cfg.members`` as a tuple of member indices, or None for all members.

    Raises:
        ConfigError: not a non-empty sequence of distinct indices below S.
    """
    if members is None:
        return None
    if (isinstance(members, (str, bytes)) or not hasattr(members, '__iter__')
            or not list(members) or len(set(members)) != len(list(members))
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_members
                       for i in members)):
        raise ConfigError(f'test_cfg.members must list distinct member indices in '
                          f'0..{num_members - 1} (num_members={num_members}), found {members!r}')
    members = tuple(members)
    return None if members == tuple(range(num_members)) else members


def check_test_cfg(test_cfg: Optional[dict]) -> None:
    """Refuse post-processing and fusion values outside their ranges at build time
    (an ``iou_thr`` of 2 or a ``max_per_img`` of 0 would otherwise give a wrong or
    missing metric with exit status 0)."""
    if not test_cfg:
        return
    check_post_processing({k: v for k, v in test_cfg.items() if k != 'ensemble'}, 'test_cfg')
    if test_cfg.get('ensemble') is not None:
        try:
            build_fuser(test_cfg['ensemble'])
        except ConfigError as err:
            raise ConfigError(f'test_cfg.ensemble: {err}') from None


@register_model
class DividedSingleStageDetector(DividedOwner, SingleStageDetector):
    """A stock mmdet single-stage detector whose backbone, neck and head are divided.

    ``num_members`` (the split factor S) is written once, here; it is passed to
    the divided backbone, neck and head, and the member widths are wired
    through: the neck reads the backbone's ``member_out_channels`` and the head
    the neck's. The neck and head configs give the *undivided* widths, so the
    S=1 config is the stock detector.

    At test time every data sample gets ``pred_instances`` (the fused
    detections) and, for S > 1, ``member_pred_instances``: a list with each
    member's own detections, which :class:`~divdet.evaluation.DividedCocoMetric`
    evaluates next to the ensemble.

    A NaN or infinite training loss stops training before the update, and a
    checkpoint whose S or backbone differs is refused
    (:mod:`divdet.models.divided.checks`).

    Args:
        num_members: the split factor S.
        member_execution: how the S members run (:mod:`divdet.models.divided.runtime`;
            same outputs and checkpoints in every case, tested): ``'auto'``
            (default: the fastest of the executors that apply, measured at the
            first calls per device and input shape), ``'sequential'``,
            ``'threads'``, ``'streams'`` or ``'devices'``. Each member's network
            runs whole (backbone, neck, head) in one call, and the members meet
            once, for the losses (batched over members and images) or the
            post-processing and fusion of their detections.
        member_devices: with ``'devices'``, member i's device (e.g.
            ``['cuda:0', 'cuda:1']``); losses and fusion run on the inputs'.
        channels_last: keep weights and activations in channels-last memory
            format: True, False, or ``'auto'`` (default): channels-last where it
            measured faster, the CPU (:data:`~divdet.models.divided.runtime.AUTO_CHANNELS_LAST`),
            set again whenever the model moves to another device. Same results
            (to float rounding) and checkpoints in either layout.
        compile_members: ``torch.compile`` each member's network (backbone,
            neck and head layers; one graph per member): False (default), True
            or a dict of ``torch.compile`` arguments (e.g. ``dict(mode=
            'reduce-overhead')``). Losses, decoding, NMS and fusion stay eager.
        backbone: a divided backbone config (e.g. ``DividedResNet``).
        neck: a divided neck config (e.g. ``DividedSSDNeck``) or None.
        bbox_head: a divided head config (e.g. ``DividedSSDHead``).
        train_cfg, test_cfg, data_preprocessor, init_cfg: as in mmdet.
    """

    owner_name = 'detector'

    def __init__(self, num_members: int, backbone: dict, bbox_head: dict,
                 neck: Optional[dict] = None, member_execution: str = 'auto',
                 member_devices: Optional[list] = None, channels_last='auto',
                 compile_members=False,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        BaseDetector.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        runtime = self.build_runtime(num_members, member_execution, member_devices,
                                     compile_members)
        check_test_cfg(test_cfg)
        self.backbone = self.build_part(MODELS, backbone, num_members, 'backbone')
        channels = self.backbone.member_out_channels
        if neck is not None:
            self.neck = self.build_part(MODELS, neck, num_members, 'neck', in_channels=channels)
            channels = self.neck.member_out_channels
        self.bbox_head = self.build_part(MODELS, bbox_head, num_members, 'bbox_head',
                                         in_channels=channels, train_cfg=train_cfg,
                                         test_cfg=test_cfg)
        if member_devices is not None and self.bbox_head.share_head:
            raise ConfigError('member_devices: a shared head (bbox_head.share_head=True) '
                              'cannot live on several devices')
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.test_members = check_test_members((test_cfg or {}).get('members'), num_members)
        self.own_parts(num_members, runtime, self.backbone, self.neck if neck is not None
                       else None, self.bbox_head, channels_last=channels_last)

    def extract_feat(self, batch_inputs: Tensor):
        """Backbone and neck features (channels-last input if so configured)."""
        return super().extract_feat(self._layout(batch_inputs))

    # Each member's network runs whole in one call of the runtime's executor
    # (backbone, neck, head), and the members meet once, for the losses (batched over
    # members and images) or the post-processing and fusion: one rendezvous instead
    # of one per part measured faster on the CPU, since members in threads drift
    # apart and every rendezvous waits for the slower.

    def _run_members(self, batch_inputs: Tensor, then=None, indices=None) -> list:
        """``then(i, head outputs of member i)`` for every member (or ``indices``)."""
        x = self._layout(batch_inputs)
        network = whole_member(self.backbone, self.neck if self.with_neck else None,
                               self.bbox_head, x, self.runtime)
        indices = range(self.num_members) if indices is None else indices
        return self.runtime.run(indices, network, x, then=then, model=self)

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict:
        """The members' SSD losses and the co-training term."""
        return self.bbox_head.loss_members(self._run_members(batch_inputs), batch_data_samples)

    def _forward(self, batch_inputs: Tensor, batch_data_samples: SampleList = None) -> tuple:
        """Every member's raw head outputs (``mode='tensor'``)."""
        return tuple(self._run_members(batch_inputs))

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Fused detections in ``pred_instances``, each member's in
        ``member_pred_instances``, and for S > 2 the fusion of the first k members
        (k = 2 .. S-1) in ``first_k_pred_instances[k - 2]``.

        With ``test_cfg.members`` (e.g. ``(0, 2)``) only those members run and are
        fused (deploying k of S members without retraining); their detections are
        in ``member_pred_instances`` in that order, named by ``member_indices``.
        """
        head = self.bbox_head
        members = head.predict_members(self._run_members(batch_inputs, indices=self.test_members),
                                       batch_data_samples, rescale, indices=self.test_members)
        fused = head.fuse_members(members, batch_data_samples, rescale,
                                  indices=self.test_members)
        batch_data_samples = self.add_pred_to_datasample(batch_data_samples, fused)
        if self.test_members is not None:  # deployed a subset: only those members ran
            for j, sample in enumerate(batch_data_samples):
                sample.member_pred_instances = [m[j] for m in members]
                sample.set_metainfo(dict(member_indices=list(self.test_members)))
            return batch_data_samples
        if self.num_members > 1:
            # the ensembles of the first k members, 1 < k < S: accuracy against the
            # number of members (and so against cost) from one test run
            first_k = [head.fuse_members(members[:k], batch_data_samples, rescale)
                       for k in range(2, self.num_members)]
            for j, sample in enumerate(batch_data_samples):
                sample.member_pred_instances = [m[j] for m in members]
                if first_k:
                    sample.first_k_pred_instances = [f[j] for f in first_k]
        return batch_data_samples
