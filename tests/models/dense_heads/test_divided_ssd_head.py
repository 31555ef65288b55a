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
    torch.manual_seed(0)  # the same weights whatever ran before (ties in the busy tests)
    head = DividedSSDHead(num_members, dict(HEAD), in_channels=CHANNELS, train_cfg=TRAIN_CFG,
                          test_cfg=TEST_CFG, **kwargs)
    head.init_weights()
    return head


def _feats(num_members, same=False, batch=2):
    torch.manual_seed(0)
    one = tuple(torch.randn(batch, c, s, s) for c, s in zip(CHANNELS, (8, 4, 2)))
    return tuple(one if same else tuple(torch.randn_like(f) for f in one)
                 for _ in range(num_members))


def _value(loss):
    """A loss as one tensor: the batched path gives one, mmdet's per-image path a list."""
    return sum(loss) if isinstance(loss, list) else loss


def _total(losses):
    return sum(_value(v) for v in losses.values())


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
        assert _value(losses['loss_bbox_m0']).item() == 0
    else:
        assert _value(losses['loss_bbox_m0']).item() > 0
    total.backward()
    for i in range(2):
        grads = [p.grad for p in head.members[i].parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_member_losses_are_mmdet_ssd_losses():
    head = _head()
    feats, samples = _feats(2), data_samples([[[10, 10, 40, 40]], [[5, 5, 20, 30]]])
    losses = head.loss(feats, samples)
    stock = head.members[1].loss(feats[1], samples)
    torch.testing.assert_close(_value(losses['loss_cls_m1']), sum(stock['loss_cls']).reshape(()))
    torch.testing.assert_close(_value(losses['loss_bbox_m1']), sum(stock['loss_bbox']))


@pytest.mark.parametrize('num_members', [2, 4])
def test_targets_assigned_once_per_batch(num_members, monkeypatch):
    """On mmdet's per-image path (configs the batched loss does not cover)."""
    from mmdet.models.dense_heads import SSDHead

    import divdet.models.dense_heads.divided_ssd_head as module
    monkeypatch.setattr(module, 'supports_batched_loss', lambda head: 'mmdet path')
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
    # the fused detections are the ensemble's fuser applied to the members' detections,
    # image by image (a separately built fuser, capped at max_per_img by score)
    from divdet.fusion import build_fuser
    from divdet.models.dense_heads.divided_ssd_head import DEFAULT_ENSEMBLE
    fuser = build_fuser(TEST_CFG.get('ensemble', DEFAULT_ENSEMBLE))
    for j, result in enumerate(fused):
        assert 0 < len(result) <= TEST_CFG['max_per_img']
        assert result.labels.dtype == torch.long and result.bboxes.shape[-1] == 4
        expected = fuser.fuse([members[0][j], members[1][j]], samples[j].metainfo['img_shape'])
        expected = expected[expected.scores.argsort(descending=True)[:TEST_CFG['max_per_img']]]
        order = result.scores.argsort(descending=True)
        torch.testing.assert_close(result.scores[order], expected.scores)
        torch.testing.assert_close(result.bboxes[order], expected.bboxes)
        assert torch.equal(result.labels[order], expected.labels)
    with pytest.raises(ValueError, match='expected features of 2 members'):
        head.predict(_feats(3), samples)


def test_registered_and_built_from_config():
    head = MODELS.build(dict(type='DividedSSDHead', num_members=2, head=dict(HEAD),
                             in_channels=CHANNELS, train_cfg=TRAIN_CFG, test_cfg=TEST_CFG))
    assert isinstance(head, DividedSSDHead)


# ---- mirrored member views: outputs mirrored back before the losses -----------------

def _outs(head, member=0, batch=2):
    return head.forward_member(member, _feats(2, batch=batch)[member])


def _mirrored(samples, flags):
    for sample, flag in zip(samples, flags):
        sample.set_metainfo(dict(member_views=flag, batch_input_shape=(64, 64)))
    return samples


def test_mirroring_back_round_trips_exactly():
    from divdet.models.dense_heads.divided_ssd_head import mirror_outputs
    outs = _outs(_head())
    which = torch.tensor([True, False])
    back = mirror_outputs(mirror_outputs(outs, which), which)
    for a, b in zip(outs[0] + outs[1], back[0] + back[1]):
        assert torch.equal(a, b)
    once = mirror_outputs(outs, which)
    assert torch.equal(once[0][0][1], outs[0][0][1])  # image 1 is not mirrored
    assert not torch.equal(once[0][0][0], outs[0][0][0])


def test_mirrored_outputs_decode_to_mirrored_boxes():
    """Decoding the mirrored outputs at the anchors gives each box mirrored, at the
    mirrored anchor: columns reversed and the x offset negated is the exact map."""
    from divdet.models.dense_heads.divided_ssd_head import mirror_outputs
    head = _head()
    ssd = head.head_of(0)
    _, deltas = _outs(head, batch=1)
    mirrored = mirror_outputs(([d[:, :1] for d in deltas], deltas), torch.tensor([True]))[1]
    sizes = [d.shape[-2:] for d in deltas]
    for anchors, d, m, (h, w) in zip(ssd.prior_generator.grid_priors(sizes, device='cpu'),
                                     deltas, mirrored, sizes):
        plain, flipped = (ssd.bbox_coder.decode(anchors, x[0].permute(1, 2, 0).reshape(-1, 4))
                          .view(h, w, -1, 4) for x in (d, m))
        expected = torch.stack([64 - plain[..., 2], plain[..., 1], 64 - plain[..., 0],
                                plain[..., 3]], -1).flip(1)
        torch.testing.assert_close(flipped, expected, atol=1e-4, rtol=0)


def test_mirrored_view_loss_equals_the_unmirrored_loss():
    """A member whose outputs come from a mirrored view, marked in ``member_views``,
    has the loss of the same outputs on the unmirrored image (SSD and co-training)."""
    from divdet.models.dense_heads.divided_ssd_head import mirror_outputs
    head = _head()
    boxes = [[[4, 6, 30, 40], [20, 10, 60, 30]], [[10, 10, 40, 40]]]
    outs = [head.forward_member(i, f) for i, f in enumerate(_feats(2))]
    flags = [(True, False), (True, True)]
    seen = [mirror_outputs(outs[i], torch.tensor([f[i] for f in flags])) for i in range(2)]
    with head.shared_targets():
        plain = head.gather_losses([head.loss_member(i, o, data_samples(boxes))
                                    for i, o in enumerate(outs)])
    with head.shared_targets():
        views = head.gather_losses([head.loss_member(i, o, _mirrored(data_samples(boxes), flags))
                                    for i, o in enumerate(seen)])
    assert plain.keys() == views.keys()
    for key in plain:
        torch.testing.assert_close(views[key], plain[key])
    unmarked = head.loss_member(0, seen[0], data_samples(boxes))[0]['loss_cls']
    assert not torch.allclose(sum(unmarked), sum(plain['loss_cls_m0']))
    # the batched loss (the default path) unmirrors the same way
    batched = head.loss_members(seen, _mirrored(data_samples(boxes), flags))
    for key in plain:
        torch.testing.assert_close(batched[key], _value(plain[key]).reshape(()))


def test_mirrored_views_that_cannot_be_mirrored_back_are_refused():
    from divdet.utils import ConfigError
    head = _head()
    outs = _outs(head)
    samples = _mirrored(data_samples([[[4, 6, 30, 40]], []]), [(True, False), (False, False)])
    samples[0].set_metainfo(dict(img_shape=(64, 56)))
    with pytest.raises(ConfigError, match='56 px wide but padded to 64'):
        head.loss_member(0, outs, samples)
    # anchors laid out for 64 px on a 60 px wide input are not mirror-symmetric
    samples = _mirrored(data_samples([[[4, 6, 30, 40]], []], size=60), [(True,), (False,)])
    for s in samples:
        s.set_metainfo(dict(batch_input_shape=(60, 60)))
    with pytest.raises(ConfigError, match='not mirror-symmetric'):
        head.loss_member(0, outs, samples)
