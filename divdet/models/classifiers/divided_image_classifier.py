"""DividedImageClassifier: mmpretrain's ImageClassifier with S set once."""
from __future__ import annotations

from typing import Optional

from mmengine.registry import MODELS as ROOT_MODELS
from mmpretrain.models.classifiers import ImageClassifier

from divdet.models.utils.members import MemberExecution, resolve_execution, with_members
from divdet.models.utils.safety import DividedModelChecks
from divdet.registry import register_model
from divdet.utils.errors import ConfigError


@register_model
class DividedImageClassifier(MemberExecution, DividedModelChecks, ImageClassifier):
    """An mmpretrain ``ImageClassifier`` with a divided backbone, neck and head.

    ``num_members`` (S) is written once, here, and passed to the divided
    backbone (e.g. ``DividedResNet``), neck (``DividedNeck``) and head
    (``DividedClsHead``); the head's input width is the backbone member's
    output width (the neck must keep the width, as global pooling does). The
    data preprocessor defaults to ``DividedClsDataPreprocessor``, so a pipeline
    with ``MemberViews`` gives every member its own augmented view.

    A NaN or infinite training loss stops training before the update, and a
    checkpoint whose S or backbone differs is refused
    (:mod:`divdet.models.utils.safety`).

    Args:
        num_members: the split factor S.
        backbone, neck, head: divided component configs.
        train_cfg: as in mmpretrain (``augments`` for Mixup/CutMix).
        member_execution: ``'auto'`` (default: members concurrently in threads
            for inputs on the CPU), ``'threads'`` or ``'sequential'``; see
            :class:`~divdet.models.utils.members.MemberExecution`.
        data_preprocessor, init_cfg: as in mmpretrain.
    """

    def __init__(self, num_members: int, backbone: dict, head: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 member_execution: str = 'auto', init_cfg: Optional[dict] = None) -> None:
        if isinstance(num_members, bool) or not isinstance(num_members, int) or num_members < 1:
            raise ConfigError(f'num_members must be a positive integer, found {num_members!r}')
        resolve_execution(member_execution, grouped_ok=False)
        backbone = ROOT_MODELS.build(with_members(backbone, num_members, 'backbone', 'classifier'))
        if neck is not None:
            neck = ROOT_MODELS.build(with_members(neck, num_members, 'neck', 'classifier'))
        head = ROOT_MODELS.build(dict(with_members(head, num_members, 'head', 'classifier'),
                                      in_channels=backbone.member_out_channels[-1]))
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'DividedClsDataPreprocessor')
        super().__init__(backbone=backbone, neck=neck, head=head, train_cfg=train_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.num_members = num_members
        self.member_execution = member_execution
