"""Shared fixtures: paths and a helper to run divdet's command line tools."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import divdet  # noqa: F401  (registers every divdet component)

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where a CUDA device is (``tools/gpu/check.sh``)."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if item.get_closest_marker('cuda') is not None:
            item.add_marker(skip)
TESTS = ROOT / 'tests'


def run_tool(*args: str, timeout: int = 600, check: bool = True,
             env: dict = None) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository root; fail with its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='2',
               **(env or {}))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n'
                    f'{proc.stderr[-4000:]}')
    return proc


@pytest.fixture
def tool():
    return run_tool


def scoped(name: str):
    """An autouse fixture that runs each test of a module in registry scope ``name``.

    Usage at module level: ``_scope = scoped('mmdet')``.
    """
    from mmengine.registry import init_default_scope

    @pytest.fixture(autouse=True)
    def _fixture():
        init_default_scope(name)

    return _fixture
