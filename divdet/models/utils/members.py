"""The split factor S from a detector/classifier to its parts, and how members run."""
from __future__ import annotations

import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterable, Iterator, Optional

import torch

from divdet.utils.errors import ConfigError


def with_members(cfg: dict, num_members: int, where: str, owner: str, **overrides) -> dict:
    """A copy of a part's config with ``num_members`` (and ``overrides``) set.

    S is written once, on the detector or classifier; a part that gives its own,
    different ``num_members`` is a config error.

    Args:
        cfg: the part's config (backbone, neck or head).
        num_members: the owner's S.
        where: the part's key, for the error message (``'backbone'``).
        owner: ``'detector'`` or ``'classifier'``, for the error message.
        **overrides: other keys to set (e.g. ``fused``).

    Raises:
        ValueError: the part's ``num_members`` disagrees with the owner's.
    """
    given = cfg.get('num_members', num_members)
    if given != num_members:
        raise ConfigError(f'S is set once, on the {owner}: model.{where}.num_members={given} '
                         f'disagrees with model.num_members={num_members}')
    return dict(cfg, num_members=num_members, **overrides)


# ---- how the members run: one after another, or concurrently in threads ------------

#: Values of a divided model's ``member_execution``.
EXECUTIONS = ('auto', 'sequential', 'threads', 'grouped')

_IN_THREADS: contextvars.ContextVar[bool] = contextvars.ContextVar('divdet_members_in_threads',
                                                                  default=False)
_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix='divdet-member')
        return _POOL


def _forget_pool() -> None:
    """A forked child (a DataLoader worker) has none of the parent's threads."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


@contextmanager
def members_in_threads(enabled: bool = True) -> Iterator[None]:
    """Within this context, :func:`map_members` runs the members concurrently."""
    token = _IN_THREADS.set(enabled)
    try:
        yield
    finally:
        _IN_THREADS.reset(token)


def in_threads() -> bool:
    """Whether :func:`map_members` runs members concurrently here."""
    return _IN_THREADS.get()


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


def map_members(fn: Callable, *iterables: Iterable) -> list:
    """``[fn(*args) for args in zip(*iterables)]``, one call per member.

    Inside :func:`members_in_threads` the calls run concurrently: the first on
    the calling thread, the others in a shared thread pool (torch releases the
    GIL inside its kernels, so S members use the cores together even where one
    member's convolutions do not). The caller's intra-op threads are shared out:
    each member computes with ``torch.get_num_threads() // S`` of them (at least
    one), so that S members do not oversubscribe the cores (oversubscribed
    OpenMP teams also slowed the process's later work). Results keep the
    members' order; an exception is raised only after every call has ended, so
    no member is still running when the caller sees it. Calls made from a pool
    thread run one after another (no nested parallelism).
    """
    calls = list(zip(*iterables))
    if len(calls) < 2 or not _IN_THREADS.get():
        return [fn(*args) for args in calls]
    threads = torch.get_num_threads()
    state = _CallerState(max(1, threads // len(calls)))
    futures = [_pool().submit(state.run, fn, *args) for args in calls[1:]]
    try:
        torch.set_num_threads(state.intra_op_threads)
        with members_in_threads(False):
            first = fn(*calls[0])
    finally:
        wait(futures)
        torch.set_num_threads(threads)
    return [first] + [f.result() for f in futures]


def draws_random_numbers(module: torch.nn.Module) -> bool:
    """Whether ``module`` has a dropout or stochastic-depth layer with a non-zero rate."""
    for m in module.modules():
        rate = getattr(m, 'p', None) if isinstance(m, torch.nn.modules.dropout._DropoutNd) \
            else getattr(m, 'drop_prob', None)
        if rate:
            return True
    return False


def resolve_execution(execution: str, grouped_ok: bool = True) -> str:
    """Check a ``member_execution`` value.

    Raises:
        ConfigError: an unknown value, or ``'grouped'`` where the model has no
            grouped path.
    """
    allowed = EXECUTIONS if grouped_ok else tuple(e for e in EXECUTIONS if e != 'grouped')
    if execution not in allowed:
        raise ConfigError(f'member_execution must be one of {allowed}, found {execution!r}')
    return execution


class MemberExecution:
    """Mixin for divided models: run ``forward`` with the members in threads where chosen.

    ``self.member_execution`` decides, per call:

    - ``'threads'``: always concurrently (:func:`map_members`);
    - ``'auto'``: concurrently when the inputs are on the CPU (measured faster
      there: ``tools/analysis_tools/benchmark.py``), unless the model is
      training with dropout or stochastic depth, whose random draws would then
      come in a racy order and runs would not repeat;
    - ``'sequential'`` and ``'grouped'``: one call for all members on the
      calling thread.

    While torch traces or compiles the model (``get_flops.py``, export), the
    members always run on the calling thread, the only one a tracer records.
    """

    member_execution: str = 'sequential'

    def members_run_in_threads(self, inputs) -> bool:
        """Whether this forward pass runs the members concurrently."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return False  # tracers and compilers record the calling thread only
        if self.member_execution == 'threads':
            return True
        if self.member_execution != 'auto' or getattr(self, 'num_members', 1) < 2:
            return False
        if not isinstance(inputs, torch.Tensor) or inputs.device.type != 'cpu':
            return False
        return not (self.training and draws_random_numbers(self))

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        with members_in_threads(self.members_run_in_threads(inputs)):
            return super().forward(inputs, data_samples, mode)
