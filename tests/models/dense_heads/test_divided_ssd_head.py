"""DividedSSDHead: summed member losses, the co-training term, fused predictions."""
import pytest
import torch
from mmdet.registry import MODELS

from divdet.models import DividedSSDHead
from tests.conftest import scoped
from tests.models.ssd_factory import HEAD, TEST_CFG, TRAIN_CFG, data_samples

_scope = scoped('mmdet')
CHANNELS = (32, 64, 64)


def _head(num_members=2, **kwargs):
    head = DividedSSDHead(num_members, dict(HEAD), in_channels=CHANNELS, train_cfg=TRAIN_CFG,
                          test_cfg=TEST_CFG, **kwargs)
    head.init_weights()
    return head


def _feats(num_members, same=False, batch=2):
    torch.manual_seed(0)
    one = tuple(torch.randn(batch, c, s, s) for c, s in zip(CHANNELS, (8, 4, 2)))
    return tuple(one if same else tuple(torch.randn_like(f) for f in one)
                 for _ in range(num_members))


def _total(losses):
    return sum(sum(v) if isinstance(v, list) else v for v in losses.values())


@pytest.mark.parametrize('boxes', [[[], []], [[[10, 10, 40, 40]], []]],
                         ids=['no-gt', 'one-box'])
def test_losses_finite_with_no_and_one_box(boxes):
    head = _head()
    losses = head.loss(_feats(2), data_samples(boxes))
    assert set(losses) == {'loss_cls_m0', 'loss_bbox_m0', 'loss_cls_m1', 'loss_bbox_m1',
                           'loss_cot'}
    total = _total(losses)
    assert torch.isfinite(total)
    if not any(boxes):  # no positives: no box regression loss
        assert sum(losses['loss_bbox_m0']).item() == 0
    else:
        assert sum(losses['loss_bbox_m0']).item() > 0
    total.backward()
    for i in range(2):
        grads = [p.grad for p in head.members[i].parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_member_losses_are_mmdet_ssd_losses():
    head = _head()
    feats, samples = _feats(2), data_samples([[[10, 10, 40, 40]], [[5, 5, 20, 30]]])
    losses = head.loss(feats, samples)
    stock = head.members[1].loss(feats[1], samples)
    torch.testing.assert_close(sum(losses['loss_cls_m1']), sum(stock['loss_cls']))
    torch.testing.assert_close(sum(losses['loss_bbox_m1']), sum(stock['loss_bbox']))


@pytest.mark.parametrize('num_members', [2, 4])
def test_targets_assigned_once_per_batch(num_members, monkeypatch):
    from mmdet.models.dense_heads import SSDHead
    calls = []
    original = SSDHead.get_targets

    def counting(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SSDHead, 'get_targets', counting)
    head = _head(num_members)
    samples = data_samples([[[10, 10, 40, 40]], [[5, 5, 20, 30]]])
    losses = head.loss(_feats(num_members), samples)
    assert len(calls) == 1 and calls[0] is head.members[0]
    assert all(torch.isfinite(_total({k: v})) for k, v in losses.items())
    # the sharing lasts one call: nothing is left on the members
    assert all('get_targets' not in vars(m) for m in head.members)
    def boom(*args, **kwargs):
        raise RuntimeError('boom')

    monkeypatch.setattr(head.members[1], 'loss_by_feat', boom)
    with pytest.raises(RuntimeError, match='boom'):  # ... also when a member's loss fails
        head.loss(_feats(num_members), samples)
    assert all('get_targets' not in vars(m) for m in head.members)


def test_cotraining_zero_for_identical_members_positive_otherwise():
    head = _head()
    head.members[1].load_state_dict(head.members[0].state_dict())
    samples = data_samples([[[10, 10, 40, 40]], []])
    assert head.loss(_feats(2, same=True), samples)['loss_cot'].item() == pytest.approx(0, abs=1e-7)
    different = head.loss(_feats(2), samples)['loss_cot']
    assert different.item() > 0
    different.backward()
    for member in head.members:  # the gradient of L_cot reaches every member
        assert sum(p.grad.abs().sum() for p in member.cls_convs.parameters()) > 0


def test_shared_head_and_single_member():
    shared = _head(share_head=True)
    assert len(shared.members) == 1 and shared.head_of(1) is shared.members[0]
    assert 'loss_cot' in shared.loss(_feats(2), data_samples([[], []]))
    single = _head(num_members=1)
    assert single.loss_cot is None
    assert set(single.loss(_feats(1), data_samples([[], []]))) == {'loss_cls', 'loss_bbox'}


def test_predict_fuses_members():
    head = _head()
    head.eval()
    samples = data_samples([[], []])
    fused, members = head.predict_with_members(_feats(2), samples)
    assert len(fused) == 2 and len(members) == 2 and len(members[0]) == 2
    for result in fused:
        assert len(result) <= TEST_CFG['max_per_img']
        assert result.labels.dtype == torch.long and result.bboxes.shape[-1] == 4
    with pytest.raises(ValueError, match='expected features of 2 members'):
        head.predict(_feats(3), samples)


def test_registered_and_built_from_config():
    head = MODELS.build(dict(type='DividedSSDHead', num_members=2, head=dict(HEAD),
                             in_channels=CHANNELS, train_cfg=TRAIN_CFG, test_cfg=TEST_CFG))
    assert isinstance(head, DividedSSDHead)
