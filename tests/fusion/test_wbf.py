"""divdet's torch WBF gives ensemble-boxes' boxes, scores and labels."""
import warnings

import numpy as np
import pytest
import torch
from ensemble_boxes import weighted_boxes_fusion as eb_wbf

from divdet.fusion import wbf
from divdet.fusion.wbf import batched_weighted_boxes_fusion, weighted_boxes_fusion


@pytest.fixture(params=['c', 'torch'])
def loop(request, monkeypatch):
    """Run a test with WBF in C (CPU tensors' default) and with the torch path (GPU's)."""
    if request.param == 'torch':
        monkeypatch.setenv('DIVDET_WBF_KERNEL', 'torch')
    return request.param


def _random_case(rng, num_models, max_boxes, num_labels, ties=False, empty_member=False):
    boxes, scores, labels = [], [], []
    for t in range(num_models):
        n = 0 if (empty_member and t == 0) else int(rng.integers(1, max_boxes + 1))
        xy = rng.uniform(-0.05, 0.9, size=(n, 2))
        wh = rng.uniform(0.0, 0.4, size=(n, 2))
        b = np.concatenate([xy, xy + wh], 1)
        if n:  # a few boxes centred on earlier ones, so that clusters form
            k = max(1, n // 2)
            b[:k] = np.clip(b[:k] + rng.normal(0, 0.02, size=(k, 4)), -0.1, 1.1)
        s = rng.choice([0.3, 0.5, 0.9], size=n) if ties else rng.uniform(0, 1, size=n)
        boxes.append(b), scores.append(s), labels.append(rng.integers(0, num_labels, size=n))
    return boxes, scores, labels


def _canonical(boxes, scores, labels):
    """Rows sorted by (score desc, label, coords): order among equal scores is not meaningful."""
    rows = np.concatenate([np.asarray(scores)[:, None], np.asarray(labels, float)[:, None],
                           np.asarray(boxes)], 1)
    return rows[np.lexsort((rows[:, 5], rows[:, 4], rows[:, 3], rows[:, 2], rows[:, 1],
                            -rows[:, 0]))]


CASES = [
    dict(num_models=2, max_boxes=30, num_labels=3),
    dict(num_models=4, max_boxes=50, num_labels=5),
    dict(num_models=3, max_boxes=1, num_labels=2),  # single boxes
    dict(num_models=3, max_boxes=12, num_labels=2, ties=True),
    dict(num_models=3, max_boxes=20, num_labels=4, empty_member=True),
]


@pytest.mark.parametrize('conf_type', ['avg', 'max', 'box_and_model_avg', 'absent_model_aware_avg'])
@pytest.mark.parametrize('case', range(len(CASES)))
@pytest.mark.parametrize('seed', range(4))
def test_matches_ensemble_boxes(case, seed, conf_type, loop):
    rng = np.random.default_rng(1000 * case + seed)
    boxes, scores, labels = _random_case(rng, **CASES[case])
    weights = list(rng.uniform(0.5, 2.0, size=len(boxes))) if seed % 2 else None
    kwargs = dict(weights=weights, iou_thr=0.55, skip_box_thr=0.1, conf_type=conf_type)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # ensemble-boxes warns on every clipped box
        ref = eb_wbf(boxes, scores, labels, **kwargs)
    got = weighted_boxes_fusion([torch.from_numpy(b) for b in boxes],
                                [torch.from_numpy(s) for s in scores],
                                [torch.from_numpy(lab) for lab in labels], **kwargs)
    got = [g.numpy() for g in got]
    assert got[2].dtype == np.int64
    assert len(got[0]) == len(ref[0])
    np.testing.assert_allclose(_canonical(*got), _canonical(*ref), atol=1e-5, rtol=0)


def test_all_empty_and_bad_input():
    empty = torch.zeros((0, 4))
    boxes, scores, labels = weighted_boxes_fusion([empty, empty], [torch.zeros(0)] * 2,
                                                  [torch.zeros(0, dtype=torch.long)] * 2)
    assert boxes.shape == (0, 4) and scores.shape == (0, ) and labels.shape == (0, )
    with pytest.raises(ValueError, match='must match'):
        weighted_boxes_fusion([torch.rand(3, 4)], [torch.rand(2)], [torch.zeros(3)])
    with pytest.raises(ValueError, match='conf_type'):
        weighted_boxes_fusion([torch.rand(3, 4)], [torch.rand(3)], [torch.zeros(3)],
                              conf_type='median')
    with pytest.raises(ValueError, match='one weight per model'):
        weighted_boxes_fusion([torch.rand(3, 4)], [torch.rand(3)], [torch.zeros(3)],
                              weights=[1, 2])


@pytest.mark.parametrize('weight', [0.0, -1.0, float('nan'), float('inf')])
def test_non_positive_or_non_finite_weight_is_refused(weight):
    """ensemble-boxes returns NaN boxes for a zero weight (its issue #44)."""
    from divdet.utils import FusionInputError
    with pytest.raises(FusionInputError, match=r'fusion weight of model \(member\) 1 is '):
        weighted_boxes_fusion([torch.rand(3, 4)] * 2, [torch.rand(3)] * 2,
                              [torch.zeros(3)] * 2, weights=[1.0, weight])


@pytest.mark.parametrize('what', ['boxes', 'scores'])
@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_non_finite_boxes_or_scores_are_refused(what, value):
    from divdet.utils import FusionInputError
    boxes = [[torch.rand(3, 4).sort(1).values for _ in range(2)] for _ in range(2)]
    scores = [[torch.rand(3) for _ in range(2)] for _ in range(2)]
    labels = [[torch.zeros(3, dtype=torch.long)] * 2] * 2
    (boxes if what == 'boxes' else scores)[1][0].view(-1)[2] = value
    with pytest.raises(FusionInputError, match=rf'image 1, model \(member\) 0: 1 {what} values '
                       'are NaN or infinite'):
        batched_weighted_boxes_fusion(boxes, scores, labels)


def test_batched_matches_per_image_ensemble_boxes(loop):
    rng = np.random.default_rng(7)
    cases = [_random_case(rng, 3, 40, 6, empty_member=(j == 2)) for j in range(5)]
    kwargs = dict(iou_thr=0.5, skip_box_thr=0.05, conf_type='avg')
    got = batched_weighted_boxes_fusion(
        [[torch.from_numpy(b) for b in c[0]] for c in cases],
        [[torch.from_numpy(s) for s in c[1]] for c in cases],
        [[torch.from_numpy(lab) for lab in c[2]] for c in cases], **kwargs)
    assert len(got) == len(cases)
    for (boxes, scores, labels), case in zip(got, cases):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            ref = eb_wbf(*case, **kwargs)
        np.testing.assert_allclose(_canonical(boxes.numpy(), scores.numpy(), labels.numpy()),
                                   _canonical(*ref), atol=1e-5, rtol=0)
        assert np.all(np.diff(scores.numpy()) <= 0)  # sorted by descending score


def test_the_cpu_kernel_is_built():
    assert wbf.HOST_KERNEL, ('divdet was installed without divdet/fusion/_C (the C++ kernel '
                             'of WBF); reinstall with `pip install --no-build-isolation -e .`')


def test_a_stale_build_falls_back_to_torch_with_a_warning(monkeypatch):
    def fail(path):
        raise OSError('undefined symbol: _ZN3c10old')

    monkeypatch.setattr(torch.ops, 'load_library', fail)
    with pytest.warns(UserWarning, match='not a usable build.*pip install'):
        assert wbf._load_op() is False


def _flat(rng, num_images=3, num_models=2):
    cases = [_random_case(rng, num_models, 30, 4) for _ in range(num_images)]
    counts = torch.tensor([[len(s) for s in c[1]] for c in cases])
    cat = [torch.from_numpy(np.concatenate([x for c in cases for x in c[k]])) for k in range(3)]
    return (counts, cat[0].double().reshape(-1, 4), cat[1].double(), cat[2].long(),
            torch.ones(num_models, dtype=torch.float64))


def test_the_operator_checks_its_inputs_in_both_kernels(monkeypatch):
    counts, boxes, scores, labels, weights = _flat(np.random.default_rng(3))
    op = torch.ops.divdet.weighted_boxes_fusion
    bad = {
        'boxes.*dtype': (counts, boxes.float(), scores, labels, weights, 'avg'),
        'scores.*dimension': (counts, boxes, scores[:, None], labels, weights, 'avg'),
        'one weight per model': (counts, boxes, scores, labels, weights[:1], 'avg'),
        'counts add up to': (counts * 2, boxes, scores, labels, weights, 'avg'),
        'conf_type must be one of': (counts, boxes, scores, labels, weights, 'median'),
    }
    for kernel in ('c++', 'torch'):
        if kernel == 'torch':
            op = wbf._wbf_torch
        for message, (c, b, s, lab, w, conf) in bad.items():
            with pytest.raises(RuntimeError, match=message):
                op(c, b, s, lab, w, 0.55, 0.0, conf, False)


def test_the_operator_runs_in_compiled_code_as_in_eager():
    counts, boxes, scores, labels, weights = _flat(np.random.default_rng(4))

    def fuse(counts, boxes, scores, labels, weights):
        out = torch.ops.divdet.weighted_boxes_fusion(counts, boxes * 1.0, scores, labels,
                                                      weights, 0.55, 0.0, 'avg', False)
        return out[0] * 2, out[1], out[2], out[3]  # work after the operator, in the graph

    eager = fuse(counts, boxes, scores, labels, weights)
    compiled = torch.compile(fuse, backend='aot_eager', fullgraph=True)(
        counts, boxes, scores, labels, weights)
    assert len(eager[0]) > 0
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
    torch.library.opcheck(torch.ops.divdet.weighted_boxes_fusion.default,
                          (counts, boxes, scores, labels, weights, 0.55, 0.0, 'avg', False),
                          test_utils=('test_schema', 'test_faketensor'))


@pytest.mark.parametrize('num_labels,ties', [(1, False), (3, True), (80, False)])
def test_c_and_torch_paths_are_bitwise_equal(monkeypatch, num_labels, ties):
    """Large groups (hundreds of sequential steps) over a batch of images; with ties
    (scores a rounding error apart must keep their order)."""
    rng = np.random.default_rng(num_labels)
    cases = [_random_case(rng, 2, 200, num_labels, ties=ties, empty_member=(j == 1))
             for j in range(3)]
    args = [[[torch.from_numpy(x) for x in part] for part in case] for case in cases]
    args = [[a[k] for a in args] for k in range(3)]  # boxes, scores, labels per image
    kwargs = dict(iou_thr=0.5, skip_box_thr=1e-4, conf_type='box_and_model_avg')
    with_c = batched_weighted_boxes_fusion(*args, **kwargs)
    monkeypatch.setenv('DIVDET_WBF_KERNEL', 'torch')
    with_torch = batched_weighted_boxes_fusion(*args, **kwargs)
    assert sum(len(r[0]) for r in with_c) > 100
    for a, b in zip(with_c, with_torch):
        for x, y in zip(a, b):
            assert torch.equal(x, y)


@pytest.mark.cuda
@pytest.mark.parametrize('num_labels,ties', [(1, False), (3, True), (80, False)])
def test_the_cuda_kernel_equals_the_cpu_kernel(num_labels, ties):
    """The batched torch code on CUDA tensors against the C++ kernel on the host."""
    rng = np.random.default_rng(num_labels)
    cases = [_random_case(rng, 2, 200, num_labels, ties=ties, empty_member=(j == 1))
             for j in range(3)]
    args = [[[torch.from_numpy(x) for x in part] for part in case] for case in cases]
    args = [[a[k] for a in args] for k in range(3)]  # boxes, scores, labels per image
    on_cuda = [[[t.cuda() for t in member] for member in part] for part in args]
    kwargs = dict(iou_thr=0.5, skip_box_thr=1e-4, conf_type='box_and_model_avg')
    host = batched_weighted_boxes_fusion(*args, **kwargs)
    device = batched_weighted_boxes_fusion(*on_cuda, **kwargs)
    assert sum(len(r[0]) for r in host) > 100
    for a, b in zip(host, device):
        assert b[0].is_cuda
        torch.testing.assert_close(b[0].cpu(), a[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b[1].cpu(), a[1], rtol=1e-12, atol=1e-12)
        assert torch.equal(b[2].cpu(), a[2])
