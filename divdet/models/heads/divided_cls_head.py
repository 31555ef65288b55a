"""DividedClsHead: one mmpretrain classification head per member, co-training, ensemble."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from mmengine.model import ModuleList
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from divdet.models.divided.part import DividedPart
from divdet.models.losses.cotraining_loss import member_loss_totals
from divdet.registry import register_model
from divdet.utils.errors import ConfigError

ENSEMBLE_MODES = ('logits', 'softmax', 'max')


def combine_logits(logits: Sequence[Tensor], mode: str = 'logits') -> Tensor:
    """Ensemble of member outputs, as class probabilities (N, C).

    Args:
        logits: one (N, C) tensor per member.
        mode: ``'logits'`` (softmax of the mean logits, the reference's
            default), ``'softmax'`` (mean of the members' softmax) or ``'max'``
            (element-wise max of the members' softmax, renormalised).
    """
    if mode == 'logits':
        return torch.stack(logits).mean(0).softmax(-1)
    probs = torch.stack([z.softmax(-1) for z in logits])
    if mode == 'softmax':
        return probs.mean(0)
    if mode == 'max':
        best = probs.max(0).values
        return best / best.sum(-1, keepdim=True)
    raise ConfigError(f'ensemble mode must be one of {ENSEMBLE_MODES}, found {mode!r}')


@register_model
class DividedClsHead(DividedPart):
    """A stock mmpretrain head (e.g. ``LinearClsHead``) per member.

    Training: the sum of the members' losses (each head's own loss, label
    smoothing and mixup scores included) plus the co-training term on the
    members' logits. Prediction: the ensemble's scores in ``pred_score`` /
    ``pred_label`` and every member's probabilities in
    ``member_pred_scores`` (S, C); for S > 2 the ensembles of the first k
    members (k = 2 .. S-1) in ``first_k_pred_scores`` (S - 2, C).

    Input/output contract::

        forward(feats: tuple of S tuples of (N, C_in)) -> (N, num_classes)
            ensemble probabilities (``ensemble`` mode)
        loss(feats, data_samples) -> {'loss_m{i}': ..., 'loss_cot': ...}

    Args:
        num_members: the split factor S.
        head: config of one member's head; ``in_channels`` is filled in.
        in_channels: input channels of one member's head.
        loss_cot: config of the co-training loss; None disables it.
        ensemble: ``'logits'`` (default), ``'softmax'`` or ``'max'``.
    """

    def __init__(self, num_members: int, head: dict, in_channels: Optional[int] = None,
                 loss_cot: Optional[dict] = dict(type='CoTrainingLoss', loss_weight=0.5),
                 ensemble: str = 'logits', init_cfg=None) -> None:
        super().__init__(num_members, init_cfg)
        if ensemble not in ENSEMBLE_MODES:
            raise ConfigError(f'ensemble must be one of {ENSEMBLE_MODES}, found {ensemble!r}')
        self.ensemble = ensemble
        cfg = dict(head)
        if in_channels is not None:
            cfg['in_channels'] = in_channels
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            self.members = ModuleList(MODELS.build(cfg) for _ in range(num_members))
            self.loss_cot = MODELS.build(loss_cot) if loss_cot and num_members > 1 else None

    def forward_member(self, i: int, feats) -> Tensor:
        """Member ``i``'s logits (N, num_classes) from its features."""
        return self.members[i](feats)

    def member_logits(self, feats: Sequence) -> list[Tensor]:
        """Each member's logits, (N, num_classes)."""
        return list(super().forward(feats))

    def forward(self, feats: Sequence) -> Tensor:
        """Ensemble class probabilities (N, num_classes)."""
        return combine_logits(self.member_logits(feats), self.ensemble)

    def loss(self, feats: Sequence, data_samples: list[DataSample], **kwargs) -> dict:
        """Sum of the members' losses plus the co-training term."""
        return self.loss_by_logits(self.member_logits(feats), data_samples, **kwargs)

    def predict(self, feats: Sequence,
                data_samples: Optional[list[Optional[DataSample]]] = None) -> list[DataSample]:
        """Ensemble predictions, with every member's scores attached when S > 1."""
        return self.predict_by_logits(self.member_logits(feats), data_samples)

    def loss_by_logits(self, logits: Sequence[Tensor], data_samples: list[DataSample],
                       **kwargs) -> dict:
        """:meth:`loss` from the members' logits."""
        losses, members = {}, []
        for i, (head, z) in enumerate(zip(self.members, logits)):
            member = head._get_loss(z, data_samples, **kwargs)
            members.append(member)
            suffix = f'_m{i}' if self.num_members > 1 else ''
            losses.update({f'{k}{suffix}': v for k, v in member.items()})
        if self.loss_cot is not None:
            if getattr(self.loss_cot, 'needs_member_losses', False):
                losses['loss_cot'] = self.loss_cot(logits,
                                                   member_losses=member_loss_totals(members))
            else:
                losses['loss_cot'] = self.loss_cot(logits)
        return losses

    def predict_by_logits(self, logits: Sequence[Tensor],
                          data_samples: Optional[list[Optional[DataSample]]] = None
                          ) -> list[DataSample]:
        """:meth:`predict` from the members' logits."""
        scores = combine_logits(logits, self.ensemble)
        if data_samples is None:
            data_samples = [None] * scores.shape[0]
        out = []
        member_scores = torch.stack([z.softmax(-1) for z in logits], 1).detach()  # (N, S, C)
        # the ensembles of the first k members, 1 < k < S: (N, S - 2, C)
        first_k = (torch.stack([combine_logits(logits[:k], self.ensemble)
                                for k in range(2, self.num_members)], 1).detach()
                   if self.num_members > 2 else None)
        for i, (sample, score) in enumerate(zip(data_samples, scores.detach())):
            sample = DataSample() if sample is None else sample
            sample.set_pred_score(score).set_pred_label(score.argmax(-1, keepdim=True))
            if self.num_members > 1:
                sample.set_field(member_scores[i], 'member_pred_scores', field_type='data')
            if first_k is not None:
                sample.set_field(first_k[i], 'first_k_pred_scores', field_type='data')
            out.append(sample)
        return out
