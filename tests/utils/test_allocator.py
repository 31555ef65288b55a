"""The tools keep large allocations in glibc's heap unless the user chose otherwise."""
import platform

import pytest

from divdet.utils.allocator import tune_malloc


def test_user_settings_are_kept(monkeypatch):
    monkeypatch.setenv('MALLOC_TRIM_THRESHOLD_', '0')
    assert tune_malloc() == 'as set in the environment'
    monkeypatch.delenv('MALLOC_TRIM_THRESHOLD_')
    monkeypatch.setenv('DIVDET_DEFAULT_MALLOC', '1')
    assert tune_malloc().startswith('default')


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc only')
def test_glibc_takes_the_setting(monkeypatch):
    for key in ('MALLOC_TRIM_THRESHOLD_', 'MALLOC_MMAP_THRESHOLD_', 'DIVDET_DEFAULT_MALLOC'):
        monkeypatch.delenv(key, raising=False)
    assert tune_malloc() == 'large allocations kept in the heap'


def test_allocator_environments(monkeypatch):
    import ctypes.util

    from divdet.utils.allocator import GLIBC_MALLOC, allocator_env
    assert allocator_env('tuned') == GLIBC_MALLOC and allocator_env('default') == {}
    with pytest.raises(ValueError, match="expected one of .*found 'mimalloc'"):
        allocator_env('mimalloc')
    monkeypatch.setattr(ctypes.util, 'find_library', lambda name: None)
    with pytest.raises(ValueError, match=r"allocator 'jemalloc': none of the libraries "
                                         r"\['libjemalloc'\] is installed"):
        allocator_env('jemalloc')
    monkeypatch.setattr(ctypes.util, 'find_library',
                        lambda name: 'libtcmalloc_minimal.so.4' if name == 'tcmalloc_minimal'
                        else None)
    assert allocator_env('tcmalloc') == {'LD_PRELOAD': 'libtcmalloc_minimal.so.4'}
