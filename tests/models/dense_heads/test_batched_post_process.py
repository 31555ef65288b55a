"""Batched decoding + NMS of all members and images equals mmdet's per-image SSD results."""
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
    import divdet.models.dense_heads.divided_ssd_head as module
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
