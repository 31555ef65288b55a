"""The code base passes the project's ruff configuration."""
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def test_ruff_clean():
    ruff = shutil.which('ruff') or str(ROOT / '.venv' / 'bin' / 'ruff')
    if not shutil.which(ruff):
        pytest.fail('ruff is not installed; run `bash tools/setup_env.sh`')
    proc = subprocess.run([ruff, 'check', '--output-format', 'concise', 'divdet', 'tools', 'tests',
                           'configs'], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
