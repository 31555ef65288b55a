"""DividedClsHead: summed member losses, co-training, ensemble modes, member scores."""
import pytest
import torch
from mmpretrain.structures import DataSample

from divdet.models import DividedClsHead, combine_logits
from tests.conftest import scoped

_scope = scoped('mmpretrain')
HEAD = dict(type='LinearClsHead', num_classes=5, loss=dict(type='CrossEntropyLoss'))


def _samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def _feats(num_members, batch=4, channels=8):
    torch.manual_seed(0)
    return tuple((torch.randn(batch, channels), ) for _ in range(num_members))


def test_loss_keys_and_gradients():
    head = DividedClsHead(3, HEAD, in_channels=8)
    losses = head.loss(_feats(3), _samples([0, 1, 2, 3]))
    assert set(losses) == {'loss_m0', 'loss_m1', 'loss_m2', 'loss_cot'}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.parameters())


def test_member_loss_is_the_stock_head_loss():
    head = DividedClsHead(2, HEAD, in_channels=8)
    feats, samples = _feats(2), _samples([0, 1, 2, 3])
    stock = head.members[1].loss(feats[1], samples)
    torch.testing.assert_close(head.loss(feats, samples)['loss_m1'], stock['loss'])


@pytest.mark.parametrize('mode', ['logits', 'softmax', 'max'])
def test_ensemble_modes(mode):
    a = torch.tensor([[2.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 3.0, 0.0]])
    probs = combine_logits([a, b], mode)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))
    expected = {'logits': torch.stack([a, b]).mean(0).softmax(-1),
                'softmax': (a.softmax(-1) + b.softmax(-1)) / 2}.get(mode)
    if expected is not None:
        torch.testing.assert_close(probs, expected)
    else:
        assert probs.argmax().item() == 1  # b's 0.91 beats a's 0.79
    with pytest.raises(ValueError, match='ensemble mode'):
        combine_logits([a, b], 'median')


def test_predict_attaches_member_scores():
    head = DividedClsHead(2, HEAD, in_channels=8, ensemble='softmax')
    out = head.predict(_feats(2), _samples([0, 1, 2, 3]))
    assert out[0].member_pred_scores.shape == (2, 5)
    torch.testing.assert_close(out[0].pred_score, out[0].member_pred_scores.mean(0))
    assert out[0].pred_label.item() == out[0].pred_score.argmax().item()


def test_single_member_has_no_cotraining():
    head = DividedClsHead(1, HEAD, in_channels=8)
    assert set(head.loss(_feats(1), _samples([0, 1, 2, 3]))) == {'loss'}
