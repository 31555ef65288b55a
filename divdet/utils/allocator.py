"""The memory allocator setting divdet's tools run with.

With glibc's defaults every allocation above the (dynamic) mmap threshold is a
fresh ``mmap`` that is returned to the system when freed, so each training or
inference step page-faults its large activations in again. Keeping them in the
heap measured faster on the 2-core CPU (S=1 training step at batch 8: 11.8 s with
glibc's defaults, 6.8 s kept in the heap; ``tools/analysis_tools/benchmark.py``
with and without ``--default-malloc``, docs/speed.md). PyTorch's CPU guides
suggest jemalloc or tcmalloc for the same reason; these two glibc settings need
no extra library.

:func:`tune_malloc` applies them to the running process through ``mallopt``
(what glibc does with the environment variables at start-up), so a user of
``tools/train.py`` and ``tools/test.py`` gets them without knowing. It does
nothing when the user set either variable or ``DIVDET_DEFAULT_MALLOC=1``, or the
C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: glibc's environment variables for the setting (the benchmark's variant
#: processes get them through the environment).
GLIBC_MALLOC = {'MALLOC_MMAP_THRESHOLD_': '2147483647', 'MALLOC_TRIM_THRESHOLD_': '2147483647'}

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def tune_malloc() -> str:
    """Keep large allocations in glibc's heap for this process; returns what was done."""
    if os.environ.get('DIVDET_DEFAULT_MALLOC') == '1':
        return 'default (DIVDET_DEFAULT_MALLOC=1)'
    if any(k in os.environ for k in GLIBC_MALLOC):
        return 'as set in the environment'
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return 'default (not glibc)'
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return 'default (no mallopt)'
    ok = mallopt(_M_MMAP_THRESHOLD, int(GLIBC_MALLOC['MALLOC_MMAP_THRESHOLD_'])) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, int(GLIBC_MALLOC['MALLOC_TRIM_THRESHOLD_'])) == 1
    return 'large allocations kept in the heap' if ok else 'default (mallopt refused)'


#: Allocators the benchmark can compare (``--allocator``): ``tuned`` (glibc with
#: :data:`GLIBC_MALLOC`, what the tools use), ``default`` (glibc as it comes), and
#: two that replace malloc through ``LD_PRELOAD``, with the libraries' names.
ALLOCATORS = {'tuned': (), 'default': (), 'jemalloc': ('jemalloc', ),
              'tcmalloc': ('tcmalloc', 'tcmalloc_minimal')}


def allocator_env(name: str) -> dict:
    """The environment variables that give a new process allocator ``name``.

    Raises:
        ValueError: an unknown name, or a preloaded allocator whose library is
            not installed.
    """
    if name not in ALLOCATORS:
        raise ValueError(f'allocator: expected one of {sorted(ALLOCATORS)}, found {name!r}')
    if name == 'tuned':
        return dict(GLIBC_MALLOC)
    if name == 'default':
        return {}
    for lib in ALLOCATORS[name]:
        found = ctypes.util.find_library(lib)
        if found:
            return {'LD_PRELOAD': found}
    raise ValueError(f'allocator {name!r}: none of the libraries '
                     f'{["lib" + lib for lib in ALLOCATORS[name]]} is installed '
                     f'(e.g. the libjemalloc2 or libtcmalloc-minimal4 package)')
