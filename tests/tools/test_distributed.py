"""tools/dist_train.sh and tools/dist_test.sh with 2 CPU processes over gloo.

Classification: a divided classifier trained by 2 processes x 4 images matches
1 process x 8 images. The tolerance is float rounding: every loss term is a
mean over the batch (cross-entropy and the co-training loss), the 2-process
loss is the mean of equal-sized rank batches, DDP averages the gradients, and
the backbone's BatchNorm uses its running statistics (``norm_eval``), so no
term depends on how the batch is split. (Training BatchNorm would need SyncBN,
which torch provides for GPUs only.)

Detection: a 2-process run trains and evaluates, and the distributed
evaluation of a checkpoint equals the 1-process one. SSD's loss is divided by
the number of positive anchors of each process's batch (mmdet's SSDHead), so
its 2-process loss is not expected to equal the 1-process loss exactly.
"""
import glob
import json
import os
import socket
import sys

import pytest

from divdet.datasets import make_digits_dataset, make_shapes_dataset
from tests.conftest import ROOT
from tests.tools.test_train_test_ssd import CONFIG as SSD_CONFIG
from tests.tools.test_train_test_ssd import _data_options

CLS_CONFIG = ROOT / 'configs/demo/resnet110-cifar_divided_1xb64-15e_digits.py'
GLOBAL_BATCH = 8


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def _script(script, *args):
    import subprocess
    env = dict(os.environ, PYTHON=sys.executable, PORT=_free_port(), OMP_NUM_THREADS='1',
               PYTHONPATH=str(ROOT))
    proc = subprocess.run(['bash', str(ROOT / 'tools' / script), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f'{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n'
                    f'{proc.stderr[-3000:]}')
    return proc


def _cls_config(tmp_path, batch_size):
    """A deterministic digits config; the data are made once by the test."""
    pipeline = [dict(type='LoadImageFromFile'), dict(type='MemberViews', transforms=[]),
                dict(type='PackInputs')]
    root = str(tmp_path / 'digits')
    text = f"""_base_ = {str(CLS_CONFIG)!r}
custom_imports = dict(imports=['divdet', 'tests.fixtures.hooks'], allow_failed_imports=False)
model = dict(backbone=dict(norm_eval=True))
train_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={root!r}, indices=16, pipeline={pipeline!r}))
val_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={root!r}, indices=40))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=2, val_interval=2)
custom_hooks = [dict(type='CoTrainingHook', warmup=1), dict(type='RecordLossHook')]
default_hooks = dict(checkpoint=dict(interval=2))
"""
    path = tmp_path / f'cls_b{batch_size}.py'
    path.write_text(text)
    return path


def _metrics(work):
    """The last evaluation's metrics: tools/test.py's file, or the val scalars of training."""
    files = (sorted(glob.glob(str(work / '*' / '*.json')))
             or sorted(glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))))
    return json.loads(open(files[-1]).read().strip().splitlines()[-1])


def test_two_gloo_processes_match_one(tool, tmp_path):
    one, two = tmp_path / 'one', tmp_path / 'two'
    make_digits_dataset(tmp_path / 'digits', size=16)
    tool('tools/train.py', str(_cls_config(tmp_path, GLOBAL_BATCH)), '--work-dir', str(one))
    proc = _script('dist_train.sh', str(_cls_config(tmp_path, GLOBAL_BATCH // 2)), '2',
                   '--work-dir', str(two))
    assert "backend='gloo'" in proc.stdout + proc.stderr
    single = json.loads((one / 'losses_rank0.json').read_text())
    ranks = [json.loads((two / f'losses_rank{r}.json').read_text()) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 4  # 2 epochs x 16 / 8
    assert ranks[0] != ranks[1]  # the ranks saw different images
    for step, loss in enumerate(single):
        assert (ranks[0][step] + ranks[1][step]) / 2 == pytest.approx(loss, rel=1e-4), step
    import torch

    from divdet.utils import load_from_local_safe
    a = load_from_local_safe(str(one / 'epoch_2.pth'))['state_dict']
    b = load_from_local_safe(str(two / 'epoch_2.pth'))['state_dict']
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    m1, m2 = _metrics(one), _metrics(two)
    assert m2['accuracy/top1'] == pytest.approx(m1['accuracy/top1'], abs=100 / 40 + 1e-6)


def test_ssd_trains_and_evaluates_on_two_processes(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=8, num_val=4, size=96, seed=1)
    options = ['--cfg-options', *_data_options(tmp_path / 'data'), 'train_cfg.max_epochs=1',
               'train_cfg.val_interval=1']
    work = tmp_path / 'work'
    _script('dist_train.sh', SSD_CONFIG, '2', '--work-dir', str(work), *options)
    checkpoint = str(work / 'epoch_1.pth')
    assert os.path.isfile(checkpoint)
    train_metrics = _metrics(work)
    assert 0.0 <= train_metrics['coco/member1_bbox_mAP'] <= 1.0
    dist, single = tmp_path / 'dist', tmp_path / 'single'
    _script('dist_test.sh', SSD_CONFIG, checkpoint, '2', '--work-dir', str(dist), *options)
    tool('tools/test.py', SSD_CONFIG, checkpoint, '--work-dir', str(single), *options)
    d, s = _metrics(dist), _metrics(single)
    keys = [k for k in s if k.startswith('coco/')]
    assert 'coco/member0_bbox_mAP_50' in keys
    assert {k: d[k] for k in keys} == {k: s[k] for k in keys}
