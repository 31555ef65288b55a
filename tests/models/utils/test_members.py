"""How members run: map_members in threads, and member_execution on the divided models."""
import copy
import threading
import time

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

from divdet.models.utils.members import (
    draws_random_numbers,
    map_members,
    members_in_threads,
    resolve_execution,
)
from divdet.utils.errors import ConfigError
from tests.conftest import scoped
from tests.models.ssd_factory import data_samples, detector_cfg

_scope = scoped('mmdet')


def test_members_run_concurrently_in_threads_and_keep_their_order():
    barrier = threading.Barrier(3, timeout=30)  # passes only if all three run at once

    def member(i):
        barrier.wait()
        return i, threading.get_ident()

    with members_in_threads():
        out = map_members(member, range(3))
    assert [i for i, _ in out] == [0, 1, 2]
    assert out[0][1] == threading.get_ident()  # the first on the calling thread
    assert len({ident for _, ident in out}) == 3


def test_outside_the_context_members_run_one_after_another_on_the_caller():
    out = map_members(lambda i, j: (i + j, threading.get_ident()), range(3), [10, 20, 30])
    assert out == [(10, threading.get_ident()), (21, threading.get_ident()),
                   (32, threading.get_ident())]


def test_workers_see_the_callers_grad_inference_and_autocast_state():
    def state(_):
        return (torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
                torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'))

    with members_in_threads():
        with torch.no_grad():
            assert {s[:2] for s in map_members(state, range(2))} == {(False, False)}
        with torch.inference_mode():
            assert {s[:2] for s in map_members(state, range(2))} == {(False, True)}
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert set(map_members(state, range(2))) == {(True, False, True, torch.bfloat16)}
        assert set(map_members(state, range(2))) == {
            (True, False, False, torch.get_autocast_dtype('cpu'))}


def test_nested_calls_in_a_worker_run_sequentially():
    def outer(i):
        return map_members(lambda _: threading.get_ident(), range(2)), threading.get_ident()

    with members_in_threads():
        for inner, ident in map_members(outer, range(2)):
            assert inner == [ident, ident]


def test_an_error_is_raised_only_after_every_member_has_ended():
    finished = threading.Event()

    def member(i):
        if i == 0:
            raise RuntimeError('member 0 failed')
        time.sleep(0.2)
        finished.set()

    with members_in_threads(), pytest.raises(RuntimeError, match='member 0 failed'):
        map_members(member, range(2))
    assert finished.is_set()


def test_draws_random_numbers():
    from mmcv.cnn.bricks import DropPath  # what mmpretrain's ResNet uses
    assert not draws_random_numbers(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1),
                                                        torch.nn.Dropout(0.0)))
    assert draws_random_numbers(torch.nn.Sequential(torch.nn.Dropout(0.1)))
    assert draws_random_numbers(torch.nn.Sequential(DropPath(0.1)))


def test_unknown_execution_is_a_config_error():
    with pytest.raises(ConfigError, match="one of .*'threads'.*found 'fast'"):
        resolve_execution('fast')
    with pytest.raises(ConfigError, match="found 'grouped'"):
        resolve_execution('grouped', grouped_ok=False)
    with pytest.raises(ConfigError, match='member_execution'):
        MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution='parallel')))


def _pair(execution):
    torch.manual_seed(0)
    seq = MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution='sequential')))
    seq.init_weights()
    other = MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution=execution)))
    other.load_state_dict(seq.state_dict())
    return seq, other


def _member_threads(model):
    """Thread ids that ran member 1's backbone, neck and head, recorded per call."""
    seen = []
    for part in (model.backbone, model.neck, model.bbox_head):
        part.members[1].register_forward_hook(lambda *_: seen.append(threading.get_ident()))
    return seen


def test_auto_runs_cpu_members_in_threads_unless_training_with_dropout():
    seq, auto = _pair('auto')
    x = torch.rand(1, 3, 64, 64)
    assert auto.members_run_in_threads(x) and not seq.members_run_in_threads(x)
    auto.eval()
    assert auto.members_run_in_threads(x)
    if torch.cuda.is_available():
        assert not auto.members_run_in_threads(x.cuda())
    auto.train()
    auto.bbox_head.members[1].add_module('dropout', torch.nn.Dropout(0.1))
    assert not auto.members_run_in_threads(x)
    auto.eval()  # dropout draws nothing in eval mode
    assert auto.members_run_in_threads(x)


def test_threads_give_the_sequential_losses_gradients_statistics_and_detections():
    seq, threaded = _pair('threads')
    seen = _member_threads(threaded)
    x = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[10, 10, 40, 40]], [[5, 5, 30, 50]]])
    losses = [m(x, copy.deepcopy(samples), mode='loss') for m in (seq, threaded)]
    assert seen and threading.get_ident() not in seen  # member 1 ran in a pool thread
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=1e-5, atol=1e-6)
    for model, loss in zip((seq, threaded), losses):
        model.parse_losses(loss)[0].backward()
    # float32 within 1e-4: members compute with fewer intra-op threads in threads
    for (name, p), q in zip(seq.named_parameters(), threaded.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, b), c in zip(seq.named_buffers(), threaded.buffers()):
        torch.testing.assert_close(c, b, rtol=1e-6, atol=1e-6, msg=name)

    seq.eval(), threaded.eval()
    with torch.no_grad():
        raw = [m(x, mode='tensor') for m in (seq, threaded)]  # every member's head outputs
        torch.testing.assert_close(raw[1], raw[0], rtol=1e-4, atol=1e-5)
        out = [m(x, copy.deepcopy(samples), mode='predict') for m in (seq, threaded)]
    for a, b in zip(*out):
        assert len(a.pred_instances) > 0
        for ra, rb in zip([a.pred_instances] + a.member_pred_instances,
                          [b.pred_instances] + b.member_pred_instances):
            torch.testing.assert_close(rb.bboxes, ra.bboxes, rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(rb.scores, ra.scores, rtol=1e-4, atol=1e-5)
            assert torch.equal(rb.labels, ra.labels)


def test_threads_with_a_shared_head_match_sequential():
    torch.manual_seed(0)
    cfgs = [dict(detector_cfg(2, share_head=True), member_execution=e)
            for e in ('sequential', 'threads')]
    seq, threaded = (MODELS.build(ConfigDict(c)) for c in cfgs)
    threaded.load_state_dict(seq.state_dict())
    x = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[10, 10, 40, 40]], [[5, 5, 30, 50]]])
    a, b = (m(x, copy.deepcopy(samples), mode='loss') for m in (seq, threaded))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_members_share_the_callers_intra_op_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with members_in_threads():
            seen = map_members(lambda _: torch.get_num_threads(), range(2))
        assert seen == [2, 2]
        assert torch.get_num_threads() == 4  # restored for the caller
        with members_in_threads():
            assert map_members(lambda _: torch.get_num_threads(), range(8)) == [1] * 8
    finally:
        torch.set_num_threads(before)
