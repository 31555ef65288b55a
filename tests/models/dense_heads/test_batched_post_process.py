"""Batched decoding + NMS of all members and images equals mmdet's per-image results
(SSD, RetinaNet, FCOS and ATSS heads)."""
import copy
from functools import partial

import pytest
import torch
from mmengine.config import ConfigDict

from divdet.models.dense_heads.batched_post_process import batched_post_process, supports_batched
from tests.conftest import scoped
from tests.models.dense_heads.test_divided_ssd_head import _feats, _head
from tests.models.ssd_factory import data_samples

_scope = scoped('mmdet')


def _busy_outputs(head, num_members, batch, seed=0):
    """Head outputs with many confident boxes (100-200 per member and image after NMS),
    as a trained detector gives, instead of random weights' near-uniform scores."""
    torch.manual_seed(seed)
    outs = [head.forward_member(i, f) for i, f in enumerate(_feats(num_members, batch=batch))]
    # logits x3: confident but not saturated (scores of 0.99999 tie in float32 and the
    # nms_pre cut then depends on the order of float operations)
    return [([c * 3 for c in cls], [b * 3 for b in box]) for cls, box in outs]


def _compare(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert len(g) == len(e)
        # same detections; boxes with equal scores may come in another order
        def rows(r):
            return sorted(zip(r.scores.tolist(), r.labels.tolist(),
                              [tuple(round(v, 3) for v in b) for b in r.bboxes.tolist()]))
        for a, b in zip(rows(g), rows(e)):
            assert a[1:] == b[1:] and a[0] == pytest.approx(b[0], rel=1e-6)
        assert bool((g.scores[:-1] >= g.scores[1:]).all())  # descending


@pytest.mark.parametrize('rescale', [False, True])
@pytest.mark.parametrize('cfg_change', [{}, dict(nms_pre=30, max_per_img=20),
                                        dict(min_bbox_size=6, score_thr=0.2)],
                         ids=['default', 'cuts', 'filters'])
def test_equals_mmdet_per_image_results(rescale, cfg_change):
    head = _head(3)
    for member in head.members:
        member.test_cfg = ConfigDict(dict(member.test_cfg, **cfg_change))
    outs = _busy_outputs(head, 3, batch=3)
    samples = data_samples([[], [], []])
    for k, s in enumerate(samples):
        s.set_metainfo(dict(img_shape=(64, 64 - 4 * k), scale_factor=(0.5 + k, 1.25)))
    metas = [s.metainfo for s in samples]
    got = batched_post_process(head.head_of(0), outs, metas, head.head_of(0).test_cfg, rescale)
    counts = []
    for i in range(3):
        expected = head.predict_member(i, outs[i], samples, rescale)
        _compare(got[i], expected)
        counts += [len(e) for e in expected]
    assert max(counts) > 10  # a realistic load, not an empty one


def test_head_predict_uses_it_and_matches_the_per_member_route():
    head = _head(2)
    head.eval()
    samples = data_samples([[], []])
    outs = _busy_outputs(head, 2, batch=2)
    batched = head.predict_members(outs, samples)
    per_member = [head.predict_member(i, o, samples) for i, o in enumerate(outs)]
    for b, p in zip(batched, per_member):
        _compare(b, p)
    assert supports_batched(head.head_of(0), head.head_of(0).test_cfg) is None


def test_unsupported_configs_fall_back_to_mmdet(monkeypatch):
    import divdet.models.dense_heads.divided_dense_head as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kw: logged.append(msg))
    head = _head(2)
    cfg = copy.deepcopy(head.head_of(0).test_cfg)
    cfg.nms = dict(type='soft_nms', iou_threshold=0.5)
    assert 'soft_nms' in supports_batched(head.head_of(0), cfg)
    for member in head.members:
        member.test_cfg = cfg
    samples = data_samples([[], []])
    outs = _busy_outputs(head, 2, batch=2)
    out = head.predict_members(outs, samples)
    expected = head.predict_member(0, outs[0], samples)
    for a, b in zip(out[0], expected):
        assert torch.equal(a.scores, b.scores)
    head.predict_members(outs, samples)
    assert len(logged) == 1 and 'not batched: nms' in logged[0]  # said once, with the reason


def test_no_box_above_the_threshold_gives_empty_results():
    head = _head(2)
    for member in head.members:
        member.test_cfg = ConfigDict(dict(member.test_cfg, score_thr=0.999))
    outs = [head.forward_member(i, f) for i, f in enumerate(_feats(2))]
    got = batched_post_process(head.head_of(0), outs, [s.metainfo for s in
                                                       data_samples([[], []])],
                               head.head_of(0).test_cfg)
    assert [[len(r) for r in m] for m in got] == [[0, 0], [0, 0]]
    assert got[0][0].bboxes.shape == (0, 4)


def _per_member(head, outs, samples):
    return [head.predict_member(i, o, samples) for i, o in enumerate(outs)]


def test_post_processing_ops_do_not_grow_with_members_or_images():
    """Operators dispatched by the post-processing: S=2 within 1.1x of S=1, and 8
    (member, image) rows within 1.3x of one (mmdet's per-member, per-image route
    grows more than 4x)."""
    from mmdet.registry import MODELS

    from divdet.apis.complexity import count_ops
    from tests.models.ssd_factory import detector_cfg
    def ops(fn):
        with torch.no_grad():
            return count_ops(fn)

    counts = {}
    for s in (1, 2):
        torch.manual_seed(0)
        model = MODELS.build(detector_cfg(num_members=s, share_head=False))
        model.init_weights()
        model.eval()
        head = model.bbox_head
        for n in (1, 4):
            x, samples = torch.rand(n, 3, 64, 64), data_samples([[]] * n)
            counts[s, n] = ops(partial(model.predict, x, samples))[1]
            outs = model(x, mode='tensor')
            # mmdet's route per member, counted in all (it runs outside the range)
            counts['mmdet', s, n] = ops(partial(_per_member, head, outs, samples))[0]
    assert counts[1, 1] > 20
    for n in (1, 4):  # S=2 within 1.1x of S=1 (one NMS call per member and image)
        assert counts[2, n] <= 1.1 * counts[1, n]
    assert counts[2, 4] <= 1.3 * counts[1, 1]
    assert counts['mmdet', 2, 4] > 4 * counts['mmdet', 1, 1]


@pytest.mark.cuda
@pytest.mark.parametrize('rescale', [False, True])
def test_cuda_equals_cpu(rescale):
    head = _head(2)
    outs = _busy_outputs(head, 2, batch=3)
    samples = data_samples([[], [], []])
    for k, s in enumerate(samples):
        s.set_metainfo(dict(img_shape=(64, 64 - 4 * k), scale_factor=(0.5 + k, 1.25)))
    metas = [s.metainfo for s in samples]
    cfg = head.head_of(0).test_cfg
    cpu = batched_post_process(head.head_of(0), outs, metas, cfg, rescale)
    on_cuda = [([c.cuda() for c in cls], [b.cuda() for b in box]) for cls, box in outs]
    gpu = batched_post_process(head.head_of(0).cuda(), on_cuda, metas, cfg, rescale)
    assert sum(len(r) for member in cpu for r in member) > 30
    for got, expected in zip(gpu, cpu):
        assert got[0].bboxes.is_cuda
        _compare([r.cpu() for r in got], expected)


def _dense_head(kind: str, num_members: int, **test_cfg):
    """A DividedDenseHead of mmdet's ``kind`` head (small), at eval."""
    from divdet.models.dense_heads import DividedDenseHead
    from tests.models.dense_heads.test_divided_dense_head import TEST_CFG
    from tests.models.dense_heads.test_divided_dense_head import _head as mmdet_head
    torch.manual_seed(0)
    head = DividedDenseHead(num_members, mmdet_head(kind), in_channels=[64] * 5,
                            test_cfg=dict(TEST_CFG, **{'score_thr': 0.05, **test_cfg}))
    head.init_weights()
    return head.eval()


def _dense_outputs(head, num_members, batch):
    """The members' outputs, random with a trained head's spread (initial class scores
    are all near the prior's 0.01, initial boxes near a point)."""
    torch.manual_seed(1)
    feats = [tuple(torch.randn(batch, 64, s, s) for s in (16, 8, 4, 2, 1))
             for _ in range(num_members)]
    with torch.no_grad():
        outs = [head.forward_member(i, f) for i, f in enumerate(feats)]
    points = type(head.head_of(0).bbox_coder).__name__ == 'DistancePointBBoxCoder'
    return [([torch.randn_like(c) * 2 - 1 for c in o[0]],  # boxes of 0-40 px from points
             [torch.rand_like(b) * 20 if points else torch.randn_like(b) * 0.5 for b in o[1]],
             *([[torch.randn_like(f) for f in o[2]]] if len(o) > 2 else [])) for o in outs]


@pytest.mark.parametrize('rescale', [False, True])
@pytest.mark.parametrize('cfg_change', [{}, dict(nms_pre=30, max_per_img=20),
                                        dict(min_bbox_size=6, score_thr=0.3)],
                         ids=['default', 'cuts', 'filters'])
@pytest.mark.parametrize('kind', ['retinanet', 'fcos', 'atss'])
def test_sigmoid_heads_equal_mmdet_per_image_results(kind, rescale, cfg_change):
    """Sigmoid classifiers, anchors (RetinaNet, ATSS) or points (FCOS), centerness as score
    factors (FCOS, ATSS): the batched route gives mmdet's predict_by_feat results."""
    head = _dense_head(kind, 2, **cfg_change)
    outs = _dense_outputs(head, 2, batch=3)
    assert len(outs[0]) == (2 if kind == 'retinanet' else 3)
    samples = data_samples([[], [], []])
    for k, s in enumerate(samples):
        s.set_metainfo(dict(img_shape=(128, 128 - 8 * k), scale_factor=(0.5 + k, 1.25)))
    member = head.head_of(0)
    assert supports_batched(member, member.test_cfg) is None
    got = batched_post_process(member, outs, [s.metainfo for s in samples], member.test_cfg,
                               rescale)
    counts = []
    for i in range(2):
        expected = head.predict_member(i, outs[i], samples, rescale)
        _compare(got[i], expected)
        counts += [len(e) for e in expected]
    assert max(counts) > 10
    # and the head's predict takes this route
    with torch.no_grad():
        via_head = head.predict_members(outs, samples, rescale)
    for a, b in zip(via_head, got):
        _compare(a, b)


def test_heads_with_their_own_post_processing_run_mmdets():
    """GFL post-processes in its own _predict_by_feat_single: not batched, said once."""
    from mmdet.registry import MODELS
    gfl = MODELS.build(dict(type='GFLHead', num_classes=4, in_channels=32, stacked_convs=1,
                            feat_channels=32, anchor_generator=dict(
                                type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                                scales_per_octave=1, strides=[8, 16])))
    assert supports_batched(gfl, dict(nms=dict(type='nms', iou_threshold=0.5))) == \
        'GFLHead has its own _predict_by_feat_single'


def test_sigmoid_post_processing_ops_do_not_grow_with_members():
    """RetinaNet's post-processing: S=2 dispatches within 1.1x of S=1's operators, and
    8 (member, image) rows within 1.3x of one; mmdet's per-member route grows more."""
    from divdet.apis.complexity import count_ops

    def ops(head, num_members, batch):
        outs = _dense_outputs(head, num_members, batch)
        samples = data_samples([[]] * batch)
        with torch.no_grad():
            ours = count_ops(partial(head.predict_members, outs, samples))[1]
            theirs = count_ops(partial(_per_member, head, outs, samples))[0]
        return ours, theirs

    one, two = _dense_head('retinanet', 1), _dense_head('retinanet', 2)
    (o11, m11), (o21, _), (o24, m24) = ops(one, 1, 1), ops(two, 2, 1), ops(two, 2, 4)
    assert o11 > 20
    assert o21 <= 1.1 * o11 and o24 <= 1.3 * o11
    assert m24 > 4 * m11


@pytest.mark.cuda
@pytest.mark.parametrize('kind', ['retinanet', 'fcos'])
def test_sigmoid_heads_cuda_equals_cpu(kind):
    head = _dense_head(kind, 2)
    outs = _dense_outputs(head, 2, batch=3)
    samples = data_samples([[], [], []])
    metas = [s.metainfo for s in samples]
    cfg = head.head_of(0).test_cfg
    cpu = batched_post_process(head.head_of(0), outs, metas, cfg, True)
    on_cuda = [tuple([t.cuda() for t in level] for level in o) for o in outs]
    gpu = batched_post_process(head.head_of(0).cuda(), on_cuda, metas, cfg, True)
    assert sum(len(r) for member in cpu for r in member) > 30
    for got, expected in zip(gpu, cpu):
        assert got[0].bboxes.is_cuda
        _compare([r.cpu() for r in got], expected)
