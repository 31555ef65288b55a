"""DropoutLinearClsHead: dropout on the pooled features in training only."""
import pytest
import torch

from divdet.models.heads import DropoutLinearClsHead
from divdet.utils.errors import ConfigError


def test_dropout_in_training_only():
    torch.manual_seed(0)
    head = DropoutLinearClsHead(num_classes=5, in_channels=64, dropout_rate=0.5)
    feats = (torch.rand(8, 64) + 0.1, )
    head.eval()
    expected = head.fc(feats[-1])
    torch.testing.assert_close(head(feats), expected)  # eval: the plain linear head
    head.train()
    dropped = head.pre_logits(feats)
    zeros = (dropped == 0).float().mean().item()
    assert 0.3 < zeros < 0.7  # about half of 512 features dropped
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], 2 * feats[-1][kept])  # scaled by 1 / (1 - p)


@pytest.mark.parametrize('rate', [-0.1, 1.0, 'x', True])
def test_dropout_rate_is_checked(rate):
    with pytest.raises(ConfigError, match=r'dropout_rate must be in \[0, 1\)'):
        DropoutLinearClsHead(num_classes=5, in_channels=8, dropout_rate=rate)
