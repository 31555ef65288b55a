"""How the S members of a divided model run: the one place that decides it.

A divided part (backbone, neck, head; :class:`DividedPart`) writes only what
*one* member does, ``forward_member(i, x)``. The model that owns the parts (a
divided detector or classifier) holds one :class:`MemberRuntime`, built from
its ``member_execution`` (and ``member_devices``) and shared with its parts;
the runtime picks an :class:`Executor` per device and makes the members'
calls through it:

- ``'sequential'``: one member after another on the calling thread;
- ``'threads'``: the members concurrently, one thread each, each with ``1/S``
  of the caller's intra-op threads (torch releases the GIL in its kernels);
- ``'streams'``: on a CUDA device each member's kernels go to a CUDA stream
  of its own, so the members' kernels can overlap; for CPU inputs the same
  code runs the members one after another;
- ``'devices'``: member ``i`` on ``member_devices[i]`` (its weights are moved
  there at the first call), its input copied there, its network outputs
  gathered back on the input's device, where the losses, decoding and the
  fusion of the members' detections run (multi-GPU inference of the paper);
- ``'auto'`` (default): measured, as ``torch.backends.cudnn.benchmark`` does
  for convolutions (:class:`AutoChoice`): the first calls with a new input
  shape on a device run the executors that apply in turn (sequential and
  threads; on CUDA streams too), timed, and the fastest is kept for that
  device and shape and logged once. The calls made while measuring are real
  calls: every executor gives the same results. Threads do not apply when
  training a model with dropout or stochastic depth (random draws made from
  several threads come in a racy order, and runs would not repeat), nor to
  compiled members (``compile_members``; torch.compile is not thread-safe).
  Training on the CPU is not measured: there the executors differ in float
  rounding (fewer intra-op threads per member in threads), so a timed choice
  would make runs depend on the machine's load; it runs in threads where they
  apply, else sequentially.

The divided models run each member's network whole (backbone, neck, head) in
one call of the executor, and the members meet once, for the losses (batched
over members and images) or the post-processing and fusion. Every executor gives the sequential
outputs, gradients, batch-norm statistics and checkpoints (tested). While
torch traces or compiles the model the members run on the calling thread, the
only one a tracer records.
"""
from __future__ import annotations

import inspect
import os
import statistics
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from typing import Any, Callable, Optional, Sequence

import torch
from mmengine.logging import print_log

from divdet.utils.errors import ConfigError

#: Values of a divided model's ``member_execution``.
EXECUTIONS = ('auto', 'sequential', 'threads', 'streams', 'devices')

#: ``'auto'``: timed calls of each candidate executor, after one untimed warm-up call
#: each, before the fastest (lowest median) is chosen for a device and input shape.
AUTO_TRIALS = 3
#: ``'auto'`` measures at most this many input shapes per device and mode; further
#: shapes take the executor chosen most often for that device and mode.
AUTO_MAX_SHAPES = 8

#: Where ``channels_last='auto'`` keeps weights and activations channels-last, per
#: device type: the CPU, where oneDNN runs the members' narrow convolutions much
#: faster in NHWC (docs/speed.md); elsewhere not measured, so NCHW.
AUTO_CHANNELS_LAST = {'cpu': True}


def compile_options(setting) -> Optional[dict]:
    """``torch.compile`` keyword arguments from a model's ``compile_members``
    (None: the members' networks are not compiled).

    Raises:
        ConfigError: ``setting`` is not True, False or a dict of ``torch.compile``
            arguments.
    """
    if setting is None or setting is False:
        return None
    if setting is True:
        return {}
    if isinstance(setting, dict):
        allowed = set(inspect.signature(torch.compile).parameters) - {'model'}
        unknown = sorted(set(setting) - allowed)
        if unknown:
            raise ConfigError(f'compile_members: expected torch.compile arguments '
                              f'({", ".join(sorted(allowed))}), found {unknown}')
        return dict(setting)
    raise ConfigError(f'compile_members must be True, False or a dict of torch.compile '
                      f'arguments, found {setting!r}')


def channels_last_for(setting, device: torch.device) -> bool:
    """Whether a model with ``channels_last=setting`` is channels-last on ``device``.

    Raises:
        ConfigError: ``setting`` is not True, False or ``'auto'``.
    """
    if setting == 'auto':
        return AUTO_CHANNELS_LAST.get(device.type, False)
    if not isinstance(setting, bool):
        raise ConfigError(f"channels_last must be True, False or 'auto', found {setting!r}")
    return setting


#: ``network(i, to_member)``: member ``i``'s network; ``to_member`` moves its input
#: to the member's device.
Network = Callable[[int, Callable[[Any], Any]], Any]


def to_device(obj, device: torch.device):
    """``obj`` (tensors in nested tuples, lists and dicts) on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def _same(obj):
    return obj


def draws_random_numbers(module: torch.nn.Module) -> bool:
    """Whether ``module`` has a dropout or stochastic-depth layer with a non-zero rate."""
    for m in module.modules():
        rate = getattr(m, 'p', None) if isinstance(m, torch.nn.modules.dropout._DropoutNd) \
            else getattr(m, 'drop_prob', None)
        if rate:
            return True
    return False


def first_tensor(obj) -> Optional[torch.Tensor]:
    """The first tensor in nested tuples and lists (None if there is none)."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = first_tensor(o)
            if t is not None:
                return t
    return None


class Executor:
    """Makes the members' calls. Subclasses override :meth:`_map`."""

    name = 'sequential'

    def run(self, indices: Sequence[int], network: Network,
            then: Optional[Callable[[int, Any], Any]] = None,
            home: Optional[torch.device] = None) -> list:
        """``[then(i, network(i, to_member)) for i in indices]``, members in order.

        ``then`` (the member's loss or decoding) runs on ``home``, the inputs'
        device; ``network`` on the member's device.
        """
        def member(i):
            outs = network(i, _same)
            return outs if then is None else then(i, outs)
        return self._map([(member, i) for i in indices])

    def _map(self, calls: list) -> list:
        return [fn(i) for fn, i in calls]

    def __deepcopy__(self, memo):  # pools, streams and locks are not copied
        return type(self)(*self._init_args())

    def _init_args(self) -> tuple:
        return ()

    def __getstate__(self):
        return dict(args=self._init_args())

    def __setstate__(self, state):
        self.__init__(*state['args'])


class SequentialExecutor(Executor):
    """One member after another on the calling thread."""


class _CallerState:
    """The calling thread's torch state that a worker thread must share.

    Grad mode, inference mode, autocast and the current CUDA device and stream
    are thread-local in torch; a member run in a pool thread must see the
    caller's (``torch.no_grad()`` in a test loop, AMP in training).
    """

    def __init__(self, intra_op_threads: int) -> None:
        self.intra_op_threads = intra_op_threads
        self.grad = torch.is_grad_enabled()
        self.inference = torch.is_inference_mode_enabled()
        self.autocast = [(d, torch.get_autocast_dtype(d)) for d in ('cpu', 'cuda')
                         if torch.is_autocast_enabled(d)]
        self.stream = torch.cuda.current_stream() if torch.cuda.is_initialized() else None

    def run(self, fn: Callable, *args):
        if torch.get_num_threads() != self.intra_op_threads:
            torch.set_num_threads(self.intra_op_threads)
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode(self.inference))
            stack.enter_context(torch.set_grad_enabled(self.grad))
            for device_type, dtype in self.autocast:
                stack.enter_context(torch.autocast(device_type, dtype=dtype))
            if self.stream is not None:
                stack.enter_context(torch.cuda.device(self.stream.device))
                stack.enter_context(torch.cuda.stream(self.stream))
            return fn(*args)


class ThreadExecutor(Executor):
    """The members concurrently: the first on the calling thread, the others in
    this executor's thread pool.

    The caller's intra-op threads are shared out: each member computes with
    ``torch.get_num_threads() // S`` of them (at least one), so that S members
    do not oversubscribe the cores (oversubscribed OpenMP teams also slowed
    the process's later work). An exception is raised only after every call
    has ended, so no member is still running when the caller sees it.
    """

    name = 'threads'

    def __init__(self) -> None:
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _workers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # a forked child has no threads
                self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix='divdet-member')
                self._pid = os.getpid()
            return self._pool

    def _map(self, calls: list) -> list:
        if len(calls) < 2:
            return super()._map(calls)
        threads = torch.get_num_threads()
        state = _CallerState(max(1, threads // len(calls)))
        pool = self._workers()
        futures = [pool.submit(state.run, fn, i) for fn, i in calls[1:]]
        try:
            torch.set_num_threads(state.intra_op_threads)
            fn, i = calls[0]
            first = fn(i)
        finally:
            wait(futures)
            torch.set_num_threads(threads)
        return [first] + [f.result() for f in futures]


class StreamExecutor(Executor):
    """Each member's kernels on a CUDA stream of its own (one host thread).

    Every member stream first waits for the work already queued on the
    current stream (the inputs), and the current stream waits for every
    member stream before the results are used. For CPU work the members run
    one after another through the same code.
    """

    name = 'streams'

    def __init__(self) -> None:
        self._streams: dict = {}

    def _map(self, calls: list) -> list:
        if len(calls) < 2 or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return super()._map(calls)
        current = torch.cuda.current_stream()
        key = (current.device, len(calls))
        if key not in self._streams:
            self._streams[key] = [torch.cuda.Stream(current.device) for _ in calls]
        out = []
        for stream, (fn, i) in zip(self._streams[key], calls):
            stream.wait_stream(current)
            with torch.cuda.stream(stream):
                out.append(fn(i))
        for stream in self._streams[key]:
            current.wait_stream(stream)
        return out


class DeviceExecutor(Executor):
    """Member ``i`` on ``devices[i]``; results gathered on the inputs' device.

    The member's network (backbone, neck, head convolutions) runs on its
    device, the rest (losses, decoding, NMS, fusion) on the inputs' device.
    Members are placed by :meth:`MemberRuntime.place` before the first call.
    """

    name = 'devices'

    def __init__(self, devices: Sequence) -> None:
        self.devices = [torch.device(d) for d in devices]

    def _init_args(self) -> tuple:
        return (self.devices, )

    def run(self, indices, network, then=None, home=None) -> list:
        out = []
        for i in indices:  # asynchronous on GPUs: the devices compute together
            device = self.devices[i]
            outs = network(i, lambda x, device=device: to_device(x, device))
            out.append(outs if home is None else to_device(outs, home))
        if then is None:
            return out
        return [then(i, outs) for i, outs in zip(indices, out)]


class AutoChoice:
    """``member_execution='auto'``: the fastest executor per device and input shape,
    measured on the first calls (like ``torch.backends.cudnn.benchmark``).

    A call with a new key (device, input shape, training mode, members) runs the
    candidate that has the fewest timings so far; once each has run
    ``1 + trials`` times (the first untimed: warm-up), the one with the lowest
    median is kept for that key, and the choice is logged once with the timings.

    Args:
        clock: seconds, e.g. ``time.perf_counter`` (a test passes a fake).
        trials: timed calls per candidate.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 trials: int = AUTO_TRIALS) -> None:
        self.clock = clock
        self.trials = trials
        self.timings: dict[tuple, dict[str, list[float]]] = {}
        self.chosen: dict[tuple, str] = {}

    def measuring(self) -> bool:
        """Whether a key's candidates are still being timed."""
        return bool(self.timings)

    def pick(self, key: tuple, candidates: Sequence[str]) -> tuple[str, bool]:
        """(executor, whether to time this call) for a call with ``key``."""
        if len(candidates) == 1:
            return candidates[0], False
        if key in self.chosen:
            return self.chosen[key], False
        if key not in self.timings:
            same = [name for k, name in self.chosen.items() if k[0] == key[0] and k[2:] == key[2:]]
            if len(same) >= AUTO_MAX_SHAPES:  # many shapes (e.g. kept aspect ratios)
                return max(set(same), key=same.count), False
        timings = self.timings.setdefault(key, {name: [] for name in candidates})
        return min(candidates, key=lambda name: len(timings[name])), True

    def record(self, key: tuple, name: str, seconds: float) -> None:
        """One timed call of ``name``; chooses once every candidate has its trials."""
        timings = self.timings[key]
        timings[name].append(seconds)
        if any(len(t) < 1 + self.trials for t in timings.values()):
            return
        medians = {n: statistics.median(t[1:]) for n, t in timings.items()}
        best = min(medians, key=medians.get)
        self.chosen[key] = best
        del self.timings[key]
        device, shape, training = key[0], key[1], key[2]
        print_log(f"member_execution='auto': {best} for {'training' if training else 'inference'}"
                  f' on {device} with inputs of shape {list(shape)} (median ms: '
                  + ', '.join(f'{n} {m * 1000:.2f}' for n, m in medians.items()) + ')',
                  logger='current')


class MemberRuntime:
    """How a divided model's members run (see the module docstring).

    Args:
        execution: one of :data:`EXECUTIONS`.
        num_members: S.
        member_devices: with ``'devices'``, one device per member.
        compile_members: compile each member's network (backbone, neck and
            head layers, one graph per member) with ``torch.compile``: True
            (its defaults), a dict of its arguments (e.g. ``dict(mode='max-autotune')``)
            or False (default). Losses, decoding, NMS and fusion stay eager.

    Raises:
        ConfigError: an unknown execution, ``member_devices`` that do not fit it,
            or a ``compile_members`` that is not one of the above.
    """

    def __init__(self, execution: str = 'auto', num_members: int = 1,
                 member_devices: Optional[Sequence] = None, compile_members=False) -> None:
        if execution not in EXECUTIONS:
            raise ConfigError(f'member_execution must be one of {EXECUTIONS}, found '
                              f'{execution!r}')
        if (execution == 'devices') != (member_devices is not None):
            raise ConfigError(f"member_devices goes with member_execution='devices' (one device "
                              f"per member); found member_execution={execution!r} and "
                              f'member_devices={member_devices!r}')
        if member_devices is not None:
            if isinstance(member_devices, str) or len(member_devices) != num_members:
                raise ConfigError(f'member_devices needs one device per member ({num_members}), '
                                  f'found {member_devices!r}')
            try:
                [torch.device(d) for d in member_devices]
            except (RuntimeError, TypeError) as e:
                raise ConfigError(f'member_devices: {e}, found {member_devices!r}') from None
        self.execution = execution
        self.num_members = num_members
        self.member_devices = list(member_devices) if member_devices is not None else None
        self.compile = compile_options(compile_members)
        if self.compile is not None and execution == 'threads':
            raise ConfigError("compile_members: compiled members cannot run in threads "
                              "(torch.compile is not thread-safe); found member_execution="
                              "'threads', expected 'auto' (sequential then), 'sequential', "
                              "'streams' or 'devices'")
        self._executors: dict[str, Executor] = {}
        self.auto = AutoChoice()
        self._parts: list = []
        self._compiled: dict = {}  # member -> (its parts, its compiled network)

    def __getstate__(self):  # a copy compiles its own members' networks anew
        return {**self.__dict__, '_compiled': {}}

    # ---- wiring ------------------------------------------------------------------

    def attach(self, *parts) -> None:
        """Make the divided ``parts`` (None skipped) run their members through this runtime."""
        for part in parts:
            if hasattr(part, 'run_members'):  # a DividedPart (None and plain modules skipped)
                part.runtime = self
                self._parts.append(part)

    def place(self) -> None:
        """With ``'devices'``: move member ``i`` of every part to its device (once)."""
        if self.member_devices is None:
            return
        devices = [torch.device(d) for d in self.member_devices]
        for part in self._parts:
            for i, member in enumerate(part.members):
                param = next(member.parameters(), None)
                if param is not None and param.device != devices[i]:
                    member.to(devices[i])

    # ---- choosing and running ----------------------------------------------------

    def candidates(self, device: Optional[torch.device], model=None) -> list[str]:
        """The executors that may run the members for inputs on ``device``: the
        configured one, or those ``'auto'`` chooses from."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return ['sequential']  # tracers and compilers record the calling thread only
        if self.execution != 'auto':
            return [self.execution]
        cuda = device is not None and device.type == 'cuda'
        names = ['sequential', 'threads'] + (['streams'] if cuda else [])
        training = model is not None and model.training
        if self.compile is not None:
            names.remove('threads')  # torch.compile is not thread-safe
        elif training and draws_random_numbers(model):
            names.remove('threads')  # racy random draws: runs would not repeat
        if training and not cuda:
            # On the CPU the executors differ in float rounding (a member in a thread
            # computes with fewer intra-op threads): a choice made by timing would make
            # a training run depend on the machine's load, and a resumed run differ
            # from an uninterrupted one. Training there keeps threads where they apply.
            return names[-1:]
        return names

    def executor_name(self, device: Optional[torch.device], model=None,
                      shape: Optional[tuple] = None) -> str:
        """The executor that runs the members for inputs on ``device`` (of ``shape``):
        the only candidate, the one ``'auto'`` chose, or ``'measuring'``."""
        names = self.candidates(device, model)
        if len(names) == 1:
            return names[0]
        key = self._auto_key(device, model, shape, None)
        return self.auto.chosen.get(key, 'measuring')

    @staticmethod
    def _auto_key(device, model, shape, indices) -> tuple:
        return (str(device), tuple(shape or ()), bool(model is not None and model.training),
                tuple(indices) if indices is not None else None)

    def executor(self, name: str) -> Executor:
        if name not in self._executors:
            self._executors[name] = {
                'sequential': SequentialExecutor, 'threads': ThreadExecutor,
                'streams': StreamExecutor,
                'devices': lambda: DeviceExecutor(self.member_devices)}[name]()
        return self._executors[name]

    def member_network(self, i: int, backbone, neck, head) -> Callable:
        """Member ``i``'s backbone, neck (None: none) and head as one function of its
        input, ``torch.compile``-d once per member if ``compile_members`` says so."""
        def net(x):
            feats = backbone.forward_member(i, x)
            if neck is not None:
                feats = neck.forward_member(i, feats)
            return head.forward_member(i, feats)

        if self.compile is None or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return net
        parts, compiled = self._compiled.get(i, ((), None))
        if len(parts) != 3 or any(a is not b for a, b in zip(parts, (backbone, neck, head))):
            # dynamo keeps compiled graphs per code object, and at most 8 of them: a
            # code object of its own per member (and model) keeps member i's graphs
            # from evicting member j's, which differ only in the closure.
            net = types.FunctionType(net.__code__.replace(co_name=f'member{i}_network'),
                                     net.__globals__, f'member{i}_network', None,
                                     net.__closure__)
            compiled = torch.compile(net, **self.compile)
            self._compiled[i] = ((backbone, neck, head), compiled)
        return compiled

    def run(self, indices: Sequence[int], network: Network, inputs,
            then: Optional[Callable[[int, Any], Any]] = None, model=None) -> list:
        """``[then(i, network(i, to_member)) for i in indices]`` through the chosen executor.

        Args:
            indices: the members to run.
            network: member ``i``'s network; call ``to_member(x)`` on its input.
            inputs: the call's inputs (their device chooses the executor).
            then: what follows the network for member ``i`` (loss, decoding); it
                runs on the inputs' device.
            model: the owning model (its training mode and random layers matter
                for ``'auto'``).
        """
        first = first_tensor(inputs)
        device = first.device if first is not None else None
        indices = list(indices)
        names = self.candidates(device, model)
        key = self._auto_key(device, model, first.shape if first is not None else None,
                             None if indices == list(range(self.num_members)) else indices)
        name, timed = self.auto.pick(key, names)
        if name == 'devices':
            self.place()
        if not timed:
            return self.executor(name).run(indices, network, then, home=device)
        _synchronize(device)
        start = self.auto.clock()
        out = self.executor(name).run(indices, network, then, home=device)
        _synchronize(device)
        self.auto.record(key, name, self.auto.clock() - start)
        return out


def _synchronize(device: Optional[torch.device]) -> None:
    """Wait for ``device``'s queued work (CUDA), so that a timing covers it."""
    if device is not None and device.type == 'cuda':
        torch.cuda.synchronize(device)


def whole_member(backbone, neck, head, inputs, runtime: Optional[MemberRuntime] = None,
                 member_input: Optional[Callable] = None) -> Network:
    """Member ``i``'s backbone, neck (None: none) and head on its share of ``inputs``:
    the ``network`` a divided detector or classifier runs per member (compiled
    per member if ``runtime`` compiles them). ``member_input(inputs, i)``
    (default: the backbone's) gives member ``i``'s share."""
    backbone.check_input(inputs)
    runtime = runtime or STANDALONE
    member_input = member_input or backbone.member_input

    def network(i, to_member):
        net = runtime.member_network(i, backbone, neck, head)
        return net(to_member(member_input(inputs, i)))
    return network


#: The runtime of a part built on its own (not inside a divided model).
STANDALONE = MemberRuntime('sequential')
