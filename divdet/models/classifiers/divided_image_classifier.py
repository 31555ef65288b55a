"""DividedImageClassifier: mmpretrain's ImageClassifier with S set once."""
from __future__ import annotations

from typing import Optional, Sequence

import torch.nn.functional as F
from mmengine.registry import MODELS as ROOT_MODELS
from mmpretrain.models.classifiers import ImageClassifier
from torch import Tensor

from divdet.models.backbones.division import scale_dropout
from divdet.models.divided.owner import DividedOwner
from divdet.models.divided.runtime import whole_member
from divdet.registry import register_model
from divdet.utils.errors import ConfigError


@register_model
class DividedImageClassifier(DividedOwner, ImageClassifier):
    """An mmpretrain ``ImageClassifier`` with a divided backbone, neck and head.

    ``num_members`` (S) is written once, here, and passed to the divided
    backbone (e.g. ``DividedResNet``), neck (``DividedNeck``) and head
    (``DividedClsHead``); the head's input width is the backbone member's
    output width (the neck must keep the width, as global pooling does). The
    data preprocessor defaults to ``DividedClsDataPreprocessor``, so a pipeline
    with ``MemberViews`` gives every member its own augmented view.

    A member head's ``dropout_rate`` (``DropoutLinearClsHead``) is the undivided
    network's; each member gets it scaled by the backbone's ``dropout_scaling``.

    A NaN or infinite training loss stops training before the update, and a
    checkpoint whose S or backbone differs is refused
    (:mod:`divdet.models.divided.checks`).

    Args:
        num_members: the split factor S.
        backbone, neck, head: divided component configs.
        train_cfg: as in mmpretrain (``augments`` for Mixup/CutMix).
        member_execution: how the members run (:mod:`divdet.models.divided.runtime`):
            ``'auto'`` (default), ``'sequential'``, ``'threads'``, ``'streams'``
            or ``'devices'``. Each member runs whole (backbone, neck, head) in
            one call, and the members meet for the loss or the ensemble.
        member_devices: with ``'devices'``, member i's device (``['cuda:0',
            'cuda:1']``).
        compile_members: ``torch.compile`` each member's network: False
            (default), True or a dict of ``torch.compile`` arguments
            (:class:`~divdet.models.divided.runtime.MemberRuntime`).
        member_scales: members at different resolutions (after MutualNet, Yang
            et al., ECCV 2020): member i sees its input resized by
            ``member_scales[i]`` (bilinear, antialiased when shrinking), in
            training and at test time; the co-training loss still compares their
            predictions. None (default): every member at the input's size.
        data_preprocessor, init_cfg: as in mmpretrain.
    """

    owner_name = 'classifier'

    def __init__(self, num_members: int, backbone: dict, head: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 member_execution: str = 'auto', member_devices: Optional[list] = None,
                 compile_members=False, member_scales: Optional[Sequence[float]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        runtime = self.build_runtime(num_members, member_execution, member_devices,
                                     compile_members)
        if member_scales is not None:
            scales = list(member_scales) if isinstance(member_scales, (list, tuple)) else None
            if scales is None or len(scales) != num_members or not all(
                    isinstance(v, (int, float)) and 0 < v <= 4 for v in scales):
                raise ConfigError(f'member_scales: expected one scale in (0, 4] per member '
                                  f'({num_members}), found {member_scales!r}')
            member_scales = tuple(float(v) for v in scales)
        backbone = self.build_part(ROOT_MODELS, backbone, num_members, 'backbone')
        if neck is not None:
            neck = self.build_part(ROOT_MODELS, neck, num_members, 'neck')
        head = dict(head)
        if head.get('head', {}).get('dropout_rate'):  # the undivided network's, scaled by S
            head['head'] = dict(head['head'], dropout_rate=scale_dropout(
                head['head']['dropout_rate'], num_members,
                getattr(backbone, 'dropout_scaling', 'linear')))
        head = self.build_part(ROOT_MODELS, head, num_members, 'head',
                               in_channels=backbone.member_out_channels[-1])
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'DividedClsDataPreprocessor')
        super().__init__(backbone=backbone, neck=neck, head=head, train_cfg=train_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.member_scales = member_scales
        self.own_parts(num_members, runtime, self.backbone,
                       self.neck if self.with_neck else None, self.head)

    def member_logits(self, inputs: Tensor) -> list[Tensor]:
        """Every member's logits, each member run whole (backbone, neck, head) in one call."""
        network = whole_member(self.backbone, self.neck if self.with_neck else None,
                               self.head, inputs, self.runtime,
                               member_input=self._scaled_input if self.member_scales else None)
        return self.runtime.run(range(self.num_members), network, inputs, model=self)

    def _scaled_input(self, inputs: Tensor, i: int) -> Tensor:
        """Member ``i``'s input at its scale (``member_scales``)."""
        x = self.backbone.member_input(inputs, i)
        scale = self.member_scales[i]
        if scale == 1.0:
            return x
        size = [max(1, round(int(d) * scale)) for d in x.shape[-2:]]  # int: ints when traced
        return F.interpolate(x, size=size, mode='bilinear', align_corners=False,
                             antialias=scale < 1)

    def extract_feat(self, inputs: Tensor, stage: str = 'neck'):
        """:meth:`ImageClassifier.extract_feat` with every member at its scale, so that
        ``mode='tensor'`` (FLOP counts, export) sees what training and test see."""
        if not self.member_scales:
            return super().extract_feat(inputs, stage)
        if stage not in ('backbone', 'neck', 'pre_logits'):
            raise ValueError(f'stage: expected "backbone", "neck" or "pre_logits", '
                             f'found {stage!r}')
        self.backbone.check_input(inputs)
        x = tuple(self.runtime.run(  # through the runtime, as the backbone's own forward
            range(self.num_members),
            lambda i, to_member: self.backbone.forward_member(
                i, to_member(self._scaled_input(inputs, i))),
            inputs, model=self))
        if stage == 'backbone':
            return x
        if self.with_neck:
            x = self.neck(x)
        return x if stage == 'neck' else self.head.pre_logits(x)

    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        """The members' losses and the co-training term."""
        return self.head.loss_by_logits(self.member_logits(inputs), data_samples)

    def predict(self, inputs: Tensor, data_samples: Optional[list] = None, **kwargs) -> list:
        """The ensemble's predictions, with every member's scores."""
        return self.head.predict_by_logits(self.member_logits(inputs), data_samples)
