"""divdet's nms: mmcv's results, computed without holding the GIL."""
import threading
import time

import pytest
import torch
from mmcv.ops import batched_nms
from mmcv.ops import nms as mmcv_nms

from divdet.models.utils.nms import nms, resolve_nms_cfg


def _boxes(n: int, seed: int = 0, span: float = 300.):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * span
    wh = torch.rand(n, 2, generator=g) * span / 5 + 1
    scores = (torch.randperm(n, generator=g).float() + 0.5) / max(n, 1)  # distinct: no ties
    return torch.cat([xy, xy + wh], 1), scores


@pytest.mark.parametrize('n', [0, 1, 7, 500])
@pytest.mark.parametrize('iou', [0.3, 0.45, 0.7])
def test_same_as_mmcv(n, iou):
    boxes, scores = _boxes(n, seed=n)
    dets, inds = nms(boxes, scores, iou)
    ref_dets, ref_inds = mmcv_nms(boxes, scores, iou)
    assert torch.equal(inds, ref_inds)
    assert torch.equal(dets, ref_dets)


def test_score_threshold_and_max_num_as_mmcv():
    boxes, scores = _boxes(400, seed=3)
    for thr, max_num in [(0.5, -1), (0.2, 10), (0, 5), (0.99, -1)]:
        dets, inds = nms(boxes, scores, 0.5, score_threshold=thr, max_num=max_num)
        ref_dets, ref_inds = mmcv_nms(boxes, scores, 0.5, score_threshold=thr, max_num=max_num)
        assert torch.equal(inds, ref_inds) and torch.equal(dets, ref_dets)


def test_offset_one_and_numpy_go_to_mmcv():
    boxes, scores = _boxes(200, seed=4)
    dets, inds = nms(boxes, scores, 0.5, offset=1)
    assert torch.equal(inds, mmcv_nms(boxes, scores, 0.5, offset=1)[1])
    assert not torch.equal(inds, nms(boxes, scores, 0.5)[1])  # the offset changes the result
    dets_np, inds_np = nms(boxes.numpy(), scores.numpy(), 0.5)
    assert (inds_np == mmcv_nms(boxes, scores, 0.5)[1].numpy()).all()


def test_bad_shapes():
    with pytest.raises(ValueError, match=r'boxes \(N, 4\).*found \(3, 5\)'):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r'found \(3, 4\) and \(2,\)'):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


def test_resolve_nms_cfg():
    cfg = dict(score_thr=0.02, nms=dict(type='nms', iou_threshold=0.45), max_per_img=200)
    out = resolve_nms_cfg(cfg)
    assert out['nms'] == dict(type=nms, iou_threshold=0.45) and out['score_thr'] == 0.02
    assert cfg['nms']['type'] == 'nms'  # the given config is not changed
    assert resolve_nms_cfg(dict(nms=dict(iou_threshold=0.5)))['nms']['type'] is nms
    for same in (None, dict(score_thr=0.1), dict(nms=dict(type='soft_nms', iou_threshold=0.5)),
                 dict(nms=dict(type='nms', iou_threshold=0.5, offset=1))):
        assert resolve_nms_cfg(same) is same


def test_batched_nms_with_resolved_cfg_as_mmcv():
    boxes, scores = _boxes(600, seed=5)
    labels = torch.randint(0, 5, (600, ), generator=torch.Generator().manual_seed(5))
    cfg = dict(type='nms', iou_threshold=0.45)
    dets, keep = batched_nms(boxes, scores, labels, resolve_nms_cfg(dict(nms=cfg))['nms'])
    ref_dets, ref_keep = batched_nms(boxes, scores, labels, cfg)
    assert torch.equal(keep, ref_keep) and torch.equal(dets, ref_dets)


def _longest_pause(fn) -> tuple[float, float]:
    """(how long fn took in a thread, longest pause of the calling thread meanwhile)."""
    done = threading.Event()
    span = {}

    def work():
        start = time.perf_counter()
        fn()
        span['t'] = time.perf_counter() - start
        done.set()

    worker = threading.Thread(target=work)
    last, longest = time.perf_counter(), 0.0
    worker.start()
    while not done.is_set():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    return span['t'], longest


def test_other_threads_run_during_nms():
    """The point of divdet's nms: Python threads (other members) run meanwhile."""
    boxes, scores = _boxes(30000, seed=6, span=3000.)
    took, paused = _longest_pause(lambda: nms(boxes, scores, 0.3))
    assert paused < took / 4, (took, paused)
    # mmcv's kernel keeps the GIL: the caller stands still for most of the call
    took, paused = _longest_pause(lambda: mmcv_nms(boxes, scores, 0.3))
    assert paused > took / 2, (took, paused)
