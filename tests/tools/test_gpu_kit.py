"""tools/gpu/check.sh: the dry run checks the kit and prints the plan; bad use is one line."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(*args, kit=None):
    env = dict(os.environ, DRY_PY=sys.executable, PYTHON=sys.executable)
    if kit is not None:
        env['GPU_KIT'] = str(kit)
    return subprocess.run(['bash', 'tools/gpu/check.sh', *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _fake_kit(tmp_path):
    """Empty files named as prepare.sh names what it downloads."""
    (tmp_path / 'wheels').mkdir()
    (tmp_path / 'src').mkdir()
    for line in (ROOT / 'tools/gpu/requirements.txt').read_text().splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
            name, version = line.split('==')
            (tmp_path / 'wheels' / f'{name.replace("-", "_")}-{version}-py3-none-any.whl').touch()
    (tmp_path / 'src' / 'mmcv-2.1.0.tar.gz').touch()
    return tmp_path


def test_dry_run_of_a_complete_kit_prints_the_plan(tmp_path):
    proc = _check('--dry-run', kit=_fake_kit(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'gpu-check --dry-run: ready' in proc.stdout
    for step in ('install', 'build', 'test', 'ops', 'bench', 'train', 'graphs'):
        assert f'\n  {step} ' in proc.stdout
    assert 'tests marked cuda' in proc.stdout and ' 0 tests marked' not in proc.stdout


def test_dry_run_names_what_is_missing(tmp_path):
    kit = _fake_kit(tmp_path)
    (kit / 'src' / 'mmcv-2.1.0.tar.gz').unlink()
    next((kit / 'wheels').glob('mmdet-*')).unlink()
    proc = _check('--dry-run', kit=kit)
    assert proc.returncode == 2
    assert 'missing: the wheel of mmdet==3.3.0 (run: bash tools/gpu/prepare.sh)' in proc.stdout
    assert "missing: mmcv's sdist" in proc.stdout and 'ready' not in proc.stdout


def test_bad_use_is_one_line():
    proc = _check('--steps', 'install,nope')
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("gpu-check: error: unknown step 'nope' in --steps (expected "
                                   'some of install,build,test,ops,bench,train,graphs)')
    import torch
    if not torch.cuda.is_available():
        proc = _check('--steps', 'test')
        assert proc.returncode == 2 and 'sees no CUDA device' in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
