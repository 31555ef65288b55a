"""How members run: the runtime's executors, and member_execution on the divided models."""
import copy
import threading
import time

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

from divdet.models.divided.runtime import (
    DeviceExecutor,
    MemberRuntime,
    SequentialExecutor,
    StreamExecutor,
    ThreadExecutor,
    draws_random_numbers,
)
from divdet.utils.errors import ConfigError
from tests.conftest import scoped
from tests.models.ssd_factory import data_samples, detector_cfg

_scope = scoped('mmdet')


def _run(executor, fn, n=2):
    return executor.run(range(n), lambda i, to_member: fn(i))


def test_members_run_concurrently_in_threads_and_keep_their_order():
    barrier = threading.Barrier(3, timeout=30)  # passes only if all three run at once

    def member(i):
        barrier.wait()
        return i, threading.get_ident()

    out = _run(ThreadExecutor(), member, 3)
    assert [i for i, _ in out] == [0, 1, 2]
    assert out[0][1] == threading.get_ident()  # the first on the calling thread
    assert len({ident for _, ident in out}) == 3


@pytest.mark.parametrize('executor', [SequentialExecutor(), StreamExecutor(),
                                      DeviceExecutor(['cpu', 'cpu', 'cpu'])],
                         ids=['sequential', 'streams', 'devices'])
def test_other_executors_run_one_after_another_on_the_caller_on_the_cpu(executor):
    order = []
    out = executor.run(range(3), lambda i, to_member: (order.append(i), to_member(i + 10))[1],
                       then=lambda i, outs: (outs, threading.get_ident()))
    assert out == [(10, threading.get_ident()), (11, threading.get_ident()),
                   (12, threading.get_ident())]
    assert order == [0, 1, 2]


def test_workers_see_the_callers_grad_inference_and_autocast_state():
    def state(_):
        return (torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
                torch.is_autocast_enabled('cpu'), torch.get_autocast_dtype('cpu'))

    threads = ThreadExecutor()
    with torch.no_grad():
        assert {s[:2] for s in _run(threads, state)} == {(False, False)}
    with torch.inference_mode():
        assert {s[:2] for s in _run(threads, state)} == {(False, True)}
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert set(_run(threads, state)) == {(True, False, True, torch.bfloat16)}
    assert set(_run(threads, state)) == {
        (True, False, False, torch.get_autocast_dtype('cpu'))}


def test_an_error_is_raised_only_after_every_member_has_ended():
    finished = threading.Event()

    def member(i):
        if i == 0:
            raise RuntimeError('member 0 failed')
        time.sleep(0.2)
        finished.set()

    with pytest.raises(RuntimeError, match='member 0 failed'):
        _run(ThreadExecutor(), member)
    assert finished.is_set()


def test_device_executor_moves_inputs_and_gathers_outputs():
    seen = []

    def network(i, to_member):
        x = to_member(torch.ones(2, dtype=torch.float64))
        seen.append(x.device)
        return (x * (i + 1), [x])

    out = DeviceExecutor(['cpu', 'meta']).run(range(2), network)  # meta: a second device
    assert seen == [torch.device('cpu'), torch.device('meta')]
    assert out[0][0].tolist() == [1.0, 1.0] and out[1][1][0].device == torch.device('meta')
    homes = []
    out = DeviceExecutor(['meta', 'meta']).run(
        range(2), lambda i, to_member: torch.ones(1),  # made on the CPU
        then=lambda i, outs: homes.append(outs.device), home=torch.device('meta'))
    assert homes == [torch.device('meta')] * 2  # gathered on the home device


def test_the_runtime_is_copied_with_its_model():
    model = MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution='threads')))
    model(torch.rand(1, 3, 64, 64), mode='tensor')  # the pool exists now
    twin = copy.deepcopy(model)
    assert twin.runtime is not model.runtime
    assert twin.backbone.runtime is twin.runtime and twin.bbox_head.runtime is twin.runtime
    assert model.backbone.runtime is model.runtime


def test_draws_random_numbers():
    from mmcv.cnn.bricks import DropPath  # what mmpretrain's ResNet uses
    assert not draws_random_numbers(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1),
                                                        torch.nn.Dropout(0.0)))
    assert draws_random_numbers(torch.nn.Sequential(torch.nn.Dropout(0.1)))
    assert draws_random_numbers(torch.nn.Sequential(DropPath(0.1)))


def test_unknown_execution_and_wrong_devices_are_config_errors():
    with pytest.raises(ConfigError, match="one of .*'threads'.*found 'fast'"):
        MemberRuntime('fast')
    with pytest.raises(ConfigError, match="found 'grouped'"):
        MemberRuntime('grouped')
    with pytest.raises(ConfigError, match='member_execution'):
        MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution='parallel')))
    with pytest.raises(ConfigError, match=r'one device per member \(2\)'):
        MemberRuntime('devices', 2, ['cpu'])
    with pytest.raises(ConfigError, match="member_devices goes with member_execution='devices'"):
        MemberRuntime('threads', 2, ['cpu', 'cpu'])
    with pytest.raises(ConfigError, match='shared head'):
        MODELS.build(ConfigDict(dict(detector_cfg(2, share_head=True),
                                     member_execution='devices', member_devices=['cpu', 'cpu'])))


def _pair(execution, **extra):
    torch.manual_seed(0)
    seq = MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution='sequential')))
    seq.init_weights()
    other = MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution=execution, **extra)))
    other.load_state_dict(seq.state_dict())
    return seq, other


def _member_threads(model):
    """Thread ids that ran member 1's backbone, neck and head, recorded per call."""
    seen = []
    for part in (model.backbone, model.neck, model.bbox_head):
        part.members[1].register_forward_hook(lambda *_: seen.append(threading.get_ident()))
    return seen


def test_auto_chooses_among_the_executors_that_apply():
    seq, auto = _pair('auto')
    cpu = torch.device('cpu')
    seq.eval(), auto.eval()
    assert seq.runtime.candidates(cpu, seq) == ['sequential']
    assert auto.runtime.candidates(cpu, auto) == ['sequential', 'threads']
    assert auto.runtime.candidates(torch.device('cuda'), auto) == ['sequential', 'threads',
                                                                   'streams']
    auto.train()  # training on the CPU is not timed: runs repeat whatever the load
    assert auto.runtime.candidates(cpu, auto) == ['threads']
    assert auto.runtime.candidates(torch.device('cuda'), auto) == ['sequential', 'threads',
                                                                   'streams']
    auto.bbox_head.members[1].add_module('dropout', torch.nn.Dropout(0.1))
    assert auto.runtime.candidates(cpu, auto) == ['sequential']  # no racy random draws
    assert auto.runtime.executor_name(cpu, auto) == 'sequential'
    assert auto.runtime.candidates(torch.device('cuda'), auto) == ['sequential', 'streams']
    auto.eval()  # dropout draws nothing in eval mode
    assert auto.runtime.candidates(cpu, auto) == ['sequential', 'threads']
    assert auto.runtime.executor_name(cpu, auto, (2, 3, 64, 64)) == 'measuring'


class _FakeClock:
    """Seconds that advance by what the running executor 'costs'."""

    def __init__(self, cost: dict) -> None:
        self.now, self.cost, self.running, self.reads = 0.0, cost, None, 0

    def __call__(self) -> float:
        self.reads += 1
        if self.running is not None:  # the end of a call: charge it
            self.now += self.cost[self.running]
        return self.now


@pytest.mark.parametrize('fastest', ['sequential', 'threads'])
def test_auto_measures_keeps_the_fastest_per_shape_and_logs_it_once(fastest, monkeypatch):
    import divdet.models.divided.runtime as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kw: logged.append(msg))
    runtime = MemberRuntime('auto', 2)
    clock = _FakeClock({'sequential': 2.0, 'threads': 1.0} if fastest == 'threads'
                       else {'sequential': 1.0, 'threads': 3.0})
    runtime.auto.clock = clock
    ran = []
    for name in ('sequential', 'threads'):
        executor = runtime.executor(name)
        original = executor.run

        def run(*args, _original=original, _name=name, **kwargs):
            ran.append(_name)
            clock.running = _name
            return _original(*args, **kwargs)
        executor.run = run

    def call(x):
        clock.running = None
        return runtime.run(range(2), lambda i, to_member: to_member(x) * (i + 1), x)

    x = torch.ones(2, 3)
    trials = 2 * (1 + module.AUTO_TRIALS)
    for _ in range(trials):
        out = call(x)
        assert [o.tolist() for o in out] == [x.tolist(), (2 * x).tolist()]  # real results
    assert sorted(ran) == sorted(['sequential', 'threads'] * (1 + module.AUTO_TRIALS))
    assert len(logged) == 1 and f"'auto': {fastest} for inference" in logged[0]
    ran.clear()
    reads = clock.reads
    for _ in range(5):
        call(x)
    assert ran == [fastest] * 5 and clock.reads == reads  # cached: no more timing
    assert runtime.executor_name(torch.device('cpu'), None, tuple(x.shape)) == fastest
    ran.clear()
    call(torch.ones(4, 3))  # a new shape is measured anew
    assert runtime.auto.measuring() and len(logged) == 1


EXECUTORS = [('threads', {}), ('streams', {}),
             ('devices', dict(member_devices=['cpu', 'cpu']))]


@pytest.mark.parametrize('execution,extra', EXECUTORS, ids=[e for e, _ in EXECUTORS])
def test_executors_give_the_sequential_losses_gradients_statistics_and_detections(
        execution, extra):
    seq, threaded = _pair(execution, **extra)
    seen = _member_threads(threaded)
    x = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[10, 10, 40, 40]], [[5, 5, 30, 50]]])
    losses = [m(x, copy.deepcopy(samples), mode='loss') for m in (seq, threaded)]
    if execution == 'threads':
        assert seen and threading.get_ident() not in seen  # member 1 ran in a pool thread
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=1e-5, atol=1e-6)
    for model, loss in zip((seq, threaded), losses):
        model.parse_losses(loss)[0].backward()
    # float32 within 1e-4 of each gradient's norm: members compute with fewer intra-op
    # threads in threads (another summation order, most visible in channels-last)
    for (name, p), q in zip(seq.named_parameters(), threaded.parameters()):
        assert (q.grad - p.grad).norm() <= 1e-4 * p.grad.norm() + 1e-6, name
    for (name, b), c in zip(seq.named_buffers(), threaded.buffers()):
        assert (c.double() - b.double()).norm() <= 1e-5 * b.double().norm() + 1e-6, name

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
        threads = ThreadExecutor()
        assert _run(threads, lambda _: torch.get_num_threads()) == [2, 2]
        assert torch.get_num_threads() == 4  # restored for the caller
        assert _run(threads, lambda _: torch.get_num_threads(), 8) == [1] * 8
    finally:
        torch.set_num_threads(before)


class _Recording:
    """A torch.compile backend that runs the traced graph as it is and counts
    the graphs it was given and their calls."""

    def __init__(self) -> None:
        self.graphs, self.calls = [], []

    def __call__(self, gm, example_inputs):
        k = len(self.graphs)
        self.graphs.append(gm)

        def run(*args):
            self.calls.append(k)
            return gm.forward(*args)
        return run


def test_compile_members_settings_are_checked():
    from divdet.models.divided.runtime import compile_options
    assert compile_options(False) is None and compile_options(True) == {}
    assert compile_options(dict(mode='max-autotune')) == dict(mode='max-autotune')
    with pytest.raises(ConfigError, match="found 'yes'"):
        compile_options('yes')
    with pytest.raises(ConfigError, match=r"expected torch.compile arguments .*found \['fast'\]"):
        compile_options(dict(fast=True))
    with pytest.raises(ConfigError, match="not thread-safe.*found member_execution='threads'"):
        MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution='threads',
                                     compile_members=True)))


@pytest.mark.parametrize('execution', ['auto', 'sequential'])
def test_compiled_members_give_the_eager_losses_gradients_statistics_and_detections(execution):
    backend = _Recording()
    seq, compiled = _pair(execution, compile_members=dict(backend=backend))
    assert compiled.runtime.executor_name(torch.device('cpu'), compiled) == 'sequential'
    x = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[10, 10, 40, 40]], [[5, 5, 30, 50]]])
    losses = [m(x, copy.deepcopy(samples), mode='loss') for m in (seq, compiled)]
    assert len(backend.graphs) == 2 and backend.calls == [0, 1]  # one graph per member
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=1e-5, atol=1e-6)
    for model, loss in zip((seq, compiled), losses):
        model.parse_losses(loss)[0].backward()
    for (name, p), q in zip(seq.named_parameters(), compiled.parameters()):
        assert (q.grad - p.grad).norm() <= 1e-4 * p.grad.norm() + 1e-6, name
    for (name, b), c in zip(seq.named_buffers(), compiled.buffers()):
        assert (c.double() - b.double()).norm() <= 1e-5 * b.double().norm() + 1e-6, name
    seq.eval(), compiled.eval()
    with torch.no_grad():
        out = [m(x, copy.deepcopy(samples), mode='predict') for m in (seq, compiled)]
    assert len(backend.graphs) == 4 and backend.calls[2:] == [2, 3]  # eval graphs
    for a, b in zip(*out):
        assert len(a.pred_instances) > 0
        torch.testing.assert_close(b.pred_instances.bboxes, a.pred_instances.bboxes,
                                   rtol=1e-5, atol=1e-4)
        assert torch.equal(b.pred_instances.labels, a.pred_instances.labels)


def test_a_copied_model_compiles_its_own_members():
    backend = _Recording()
    model = MODELS.build(ConfigDict(dict(detector_cfg(2), compile_members=dict(backend=backend))))
    model.eval()
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        model(x, mode='tensor')
        twin = copy.deepcopy(model)
        for p in twin.parameters():
            p.mul_(0.9)
        theirs = twin(x, mode='tensor')
        # the twin's members were compiled anew (by its copy of the backend)
        assert len(twin.runtime.compile['backend'].graphs) == 4
        ours = model(x, mode='tensor')
        assert len(backend.graphs) == 2 and backend.calls == [0, 1, 0, 1]
        twin.runtime.compile = None
        torch.testing.assert_close(twin(x, mode='tensor'), theirs)  # the twin's own weights
    assert not torch.allclose(ours[0][0][0], theirs[0][0][0])


def test_members_compiled_by_inductor_match_eager():
    torch.manual_seed(0)
    eager = MODELS.build(ConfigDict(detector_cfg(2)))
    compiled = MODELS.build(ConfigDict(dict(detector_cfg(2), compile_members=True)))
    compiled.load_state_dict(eager.state_dict())
    eager.eval(), compiled.eval()
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, mode='tensor'), eager(x, mode='tensor'),
                                   rtol=1e-4, atol=1e-4)


def _exact_cuda_math():
    """fp32 convolutions and matmuls without TF32 rounding, deterministic cuDNN."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True


@pytest.mark.cuda
@pytest.mark.parametrize('execution', ['sequential', 'streams', 'threads', 'auto'])
def test_cuda_executors_give_the_cpu_losses_gradients_and_outputs(execution):
    _exact_cuda_math()
    torch.manual_seed(0)
    cpu, gpu = (MODELS.build(ConfigDict(dict(detector_cfg(2), member_execution=e,
                                             channels_last=False)))
                for e in ('sequential', execution))
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda()
    x = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[10, 10, 40, 40]], [[5, 5, 30, 50], [20, 20, 60, 60]]])
    losses = [cpu(x, copy.deepcopy(samples), mode='loss'),
              gpu(x.cuda(), [s.cuda() for s in copy.deepcopy(samples)], mode='loss')]
    for key in losses[0]:
        torch.testing.assert_close(losses[1][key].cpu(), losses[0][key], rtol=1e-4, atol=1e-5)
    for model, loss in zip((cpu, gpu), losses):
        model.parse_losses(loss)[0].backward()
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        assert (q.grad.cpu() - p.grad).norm() <= 1e-3 * p.grad.norm() + 1e-5, name
    cpu.eval(), gpu.eval()
    with torch.no_grad():
        raw = [cpu(x, mode='tensor'), gpu(x.cuda(), mode='tensor')]
    leaves = torch.utils._pytree.tree_leaves
    for a, b in zip(leaves(raw[0]), leaves(raw[1])):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)
