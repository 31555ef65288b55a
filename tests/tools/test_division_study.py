"""tools/analysis_tools/division_study.py trains and tests every (variant, S, seed) as a
user would, writes study.json/md/png, and a killed study resumes without redoing
finished runs."""
import json
import signal
import subprocess
import sys
import time

from divdet.datasets import make_shapes_dataset
from tests.conftest import ROOT
from tests.tools.test_train_test_ssd import CONFIG, _data_options

TOOL = 'tools/analysis_tools/division_study.py'


def _args(tmp_path):
    return [TOOL, CONFIG, '--splits', '1', '2', '--seeds', '0',
            '--variant', 'no-cot', 'model.bbox_head.loss_cot=None',
            '--cfg-options', *_data_options(tmp_path / 'data'), 'train_cfg.max_epochs=1',
            'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1',
            '--work-dir', str(tmp_path / 'study'), '--latency-rounds', '1', '--latency-calls', '2']


def test_study_writes_tables_and_resumes(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=4, num_val=2, size=64, seed=1)
    study = tmp_path / 'study'
    # Kill the study while its second run trains; the first stays finished.
    import os
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='2')
    proc = subprocess.Popen([sys.executable, *_args(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    first = study / 'runs' / 'default_s1_seed0' / 'result.json'
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert first.exists(), proc.communicate()[0][-3000:] if proc.poll() is not None else 'slow'
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = first.stat().st_mtime

    out = tool(*_args(tmp_path)).stdout
    assert 'study: 3 runs, 1 already finished' in out
    assert first.stat().st_mtime == finished  # not run again
    for name in ('default_s2_seed0', 'no-cot_s2_seed0'):
        assert f'study: {name} finished in' in out
    assert 'no-cot_s1' not in out  # variants run for S > 1 only

    data = json.loads((study / 'study.json').read_text())
    assert data['metric'] == 'coco/bbox_mAP'
    assert [(r['variant'], r['num_members']) for r in data['rows']] == [
        ('default', 1), ('default', 2), ('no-cot', 2)]
    runs = {(r['variant'], r['num_members']): r for r in data['runs']}
    assert 'model.bbox_head.loss_cot=None' in runs[('no-cot', 2)]['overrides']
    assert 'randomness.seed=0' in runs[('default', 2)]['overrides']
    for row in data['rows']:
        assert row['params_m'] > 0 and row['gflops'] > 0 and row['latency_ms'] > 0
        assert row['seeds'] == [0]
        ens = row['ensemble_runs'][0]
        run = runs[(row['variant'], row['num_members'])]
        assert ens == 100 * run['metrics']['coco/bbox_mAP']
    two = next(r for r in data['rows'] if r['num_members'] == 2)
    run = runs[('default', 2)]['metrics']
    assert two['best_member_runs'][0] == 100 * max(run['coco/member0_bbox_mAP'],
                                                   run['coco/member1_bbox_mAP'])
    # S=1 has about the parameters of S=2 (the width rule), not twice as many
    one = data['rows'][0]
    assert 0.7 < two['params_m'] / one['params_m'] < 1.3
    md = (study / 'study.md').read_text()
    assert '3 of 3 runs finished' in md and '| no-cot | 2 |' in md
    assert (study / 'study.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # a finished study runs nothing again
    again = tool(*_args(tmp_path)).stdout
    assert 'study: 3 runs, 3 already finished' in again and 'finished in' not in again


def test_bad_variant_is_one_line(tool, tmp_path):
    proc = tool(TOOL, CONFIG, '--variant', 'x', 'nonsense', '--work-dir', str(tmp_path),
                check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert "divdet: error: --variant 'x' needs KEY=VALUE overrides" in proc.stderr


def test_summary_only_runs_nothing(tool, tmp_path):
    proc = tool(TOOL, CONFIG, '--splits', '1', '2', '--seeds', '0', '--work-dir',
                str(tmp_path / 'study'), '--summary-only')
    assert 'study: 2 runs, 0 already finished' in proc.stdout
    assert not (tmp_path / 'study' / 'runs').exists()
    assert '0 of 2 runs finished' in (tmp_path / 'study' / 'study.md').read_text()
