"""LinearClsHead with dropout before the classifier (EfficientNet, SENet)."""
from __future__ import annotations

import torch.nn as nn
from mmpretrain.models.heads import LinearClsHead

from divdet.registry import register_model
from divdet.utils.errors import ConfigError


@register_model
class DropoutLinearClsHead(LinearClsHead):
    """mmpretrain's :class:`LinearClsHead` with dropout on the pooled features.

    EfficientNet and SENet drop the pooled features before their last linear
    layer (p = 0.2 for EfficientNet-B0 and SENet-154). In a divided classifier
    ``dropout_rate`` is the undivided network's; each member gets it scaled by
    its backbone family's rule (p / sqrt(S) for those two families).

    Args:
        dropout_rate: probability of zeroing a feature in training, in [0, 1).
        **kwargs: :class:`LinearClsHead`'s arguments.
    """

    def __init__(self, *args, dropout_rate: float = 0.0, **kwargs) -> None:
        if isinstance(dropout_rate, bool) or not isinstance(dropout_rate, (int, float)) \
                or not 0 <= dropout_rate < 1:
            raise ConfigError(f'DropoutLinearClsHead: dropout_rate must be in [0, 1), '
                              f'found {dropout_rate!r}')
        super().__init__(*args, **kwargs)
        self.dropout_rate = float(dropout_rate)
        self.dropout = nn.Dropout(self.dropout_rate)

    def pre_logits(self, feats):
        """The last stage's pooled features, dropped out in training."""
        return self.dropout(super().pre_logits(feats))
