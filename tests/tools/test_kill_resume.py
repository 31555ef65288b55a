"""A divided SSD run killed with SIGKILL (mid-epoch, or while writing a checkpoint),
or whose checkpoint write fails on a full disk, resumes with --resume from its last
complete checkpoint and ends exactly where an uninterrupted run ends: weights,
co-training weight, optimizer state, LR, iteration. With ``max_keep_ckpts=1`` the
previous checkpoint survives until the next one is complete."""
import signal

import pytest
import torch

from divdet.datasets import make_shapes_dataset
from divdet.utils import load_from_local_safe
from tests.conftest import ROOT

BASE = ROOT / 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py'
ITERS_PER_EPOCH = 4  # 8 images, batch 2
MAX_EPOCHS = 3


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp('kill')
    make_shapes_dataset(root / 'data', num_train=8, num_val=2, size=96, seed=2)
    data = f'{root}/data/'
    # No random augmentation: an uninterrupted and a resumed run see the same inputs.
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                dict(type='Resize', scale=(128, 128), keep_ratio=False),
                dict(type='PackDetInputs')]
    loader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                  dataset=dict(data_root=data))
    text = f"""_base_ = {str(BASE)!r}
custom_imports = dict(imports=['divdet', 'tests.fixtures.hooks'], allow_failed_imports=False)
train_dataloader = {dict(loader, dataset=dict(data_root=data, pipeline=pipeline))!r}
val_dataloader = {loader!r}
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={data!r} + 'annotations/instances_val.json')
train_cfg = dict(max_epochs={MAX_EPOCHS}, val_interval=100)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=6),
                   dict(type='MultiStepLR', by_epoch=True, milestones=[2], gamma=0.1)]
custom_hooks = [dict(type='CoTrainingHook', warmup=2), dict(type='SigkillHook')]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=5))
randomness = dict(seed=0)
"""
    path = root / 'kill_config.py'
    path.write_text(text)
    return path


@pytest.fixture(scope='module')
def straight_dir(config, tmp_path_factory):
    from tests.conftest import run_tool
    work = tmp_path_factory.mktemp('straight')
    run_tool('tools/train.py', str(config), '--work-dir', str(work))
    return work


@pytest.fixture(scope='module')
def straight(straight_dir):
    return load_from_local_safe(str(straight_dir / f'epoch_{MAX_EPOCHS}.pth'))


def _assert_same_end(resumed, reference):
    assert resumed['meta']['epoch'] == reference['meta']['epoch'] == MAX_EPOCHS
    assert resumed['meta']['iter'] == reference['meta']['iter'] == MAX_EPOCHS * ITERS_PER_EPOCH
    state, ref = resumed['state_dict'], reference['state_dict']
    assert state.keys() == ref.keys()
    cot = [k for k in ref if k.endswith('loss_cot.weight')]
    assert cot and all(float(state[k]) == float(ref[k]) == 0.5 for k in cot)
    for key, value in ref.items():
        torch.testing.assert_close(state[key], value, rtol=1e-4, atol=1e-5, msg=key)
    groups = resumed['optimizer']['param_groups']
    assert [g['lr'] for g in groups] == pytest.approx(
        [g['lr'] for g in reference['optimizer']['param_groups']])
    ref_state = reference['optimizer']['state']
    assert resumed['optimizer']['state'].keys() == ref_state.keys() and ref_state
    for k, v in ref_state.items():
        torch.testing.assert_close(resumed['optimizer']['state'][k]['momentum_buffer'],
                                   v['momentum_buffer'], rtol=1e-4, atol=1e-5)
    assert ([s['_global_step'] for s in resumed['param_schedulers']]
            == [s['_global_step'] for s in reference['param_schedulers']])


def _resume(tool, config, work, *options):
    proc = tool('tools/train.py', str(config), '--work-dir', str(work), '--resume', *options)
    log = proc.stdout + proc.stderr
    assert f'resumed epoch: 1, iter: {ITERS_PER_EPOCH}' in log
    return load_from_local_safe(str(work / f'epoch_{MAX_EPOCHS}.pth'))


KEEP_ONE = ('--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=1')


def test_sigkill_mid_epoch_then_resume(tool, config, straight, tmp_path):
    kill_at = ITERS_PER_EPOCH + 2  # in the middle of epoch 2
    proc = tool('tools/train.py', str(config), '--work-dir', str(tmp_path), check=False,
                env={'DIVDET_KILL_AT_ITER': str(kill_at)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    assert not (tmp_path / 'epoch_2.pth').exists()
    saved = load_from_local_safe(str(tmp_path / 'epoch_1.pth'))
    assert saved['meta']['iter'] == ITERS_PER_EPOCH
    _assert_same_end(_resume(tool, config, tmp_path), straight)


def test_sigkill_while_writing_a_checkpoint_then_resume(tool, config, straight, tmp_path):
    proc = tool('tools/train.py', str(config), '--work-dir', str(tmp_path), check=False,
                env={'DIVDET_KILL_SAVING': 'epoch_2.pth'})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # The complete bytes of epoch_2 sat in a temporary file; the published name
    # never pointed at anything partial, and last_checkpoint still names epoch 1.
    assert not (tmp_path / 'epoch_2.pth').exists()
    assert list(tmp_path.glob('.epoch_2.pth.*.part'))
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    _assert_same_end(_resume(tool, config, tmp_path), straight)


def test_keep_one_sigkill_while_writing_keeps_the_previous_checkpoint(tool, config, straight,
                                                                     tmp_path):
    """mmengine deletes epoch_1 before writing epoch_2: a kill in between left no
    checkpoint and a last_checkpoint naming a deleted file."""
    proc = tool('tools/train.py', str(config), '--work-dir', str(tmp_path), *KEEP_ONE,
                check=False, env={'DIVDET_KILL_SAVING': 'epoch_2.pth'})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    assert load_from_local_safe(str(tmp_path / 'epoch_1.pth'))['meta']['iter'] == ITERS_PER_EPOCH
    stale = list(tmp_path.glob('.epoch_2.pth.*.part'))
    assert stale
    resumed = _resume(tool, config, tmp_path, *KEEP_ONE)
    assert not any(p.exists() for p in stale)  # removed at the next start
    _assert_same_end(resumed, straight)
    # keep=1 still prunes, once the newer checkpoint is published
    assert sorted(p.name for p in tmp_path.glob('epoch_*.pth')) == [f'epoch_{MAX_EPOCHS}.pth']


def test_keep_one_full_disk_is_one_error_and_resumes(tool, config, straight, tmp_path):
    proc = tool('tools/train.py', str(config), '--work-dir', str(tmp_path), *KEEP_ONE,
                check=False, env={'DIVDET_ENOSPC_SAVING': 'epoch_2.pth'})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    error = [x for x in proc.stderr.splitlines() if x.startswith('divdet: error: ')]
    assert len(error) == 1, proc.stderr[-2000:]
    assert 'could not write checkpoint' in error[0] and 'epoch_2.pth' in error[0]
    assert 'No space left on device (errno 28)' in error[0]
    assert 'epoch_1.pth is intact' in error[0]
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    assert load_from_local_safe(str(tmp_path / 'epoch_1.pth'))['meta']['iter'] == ITERS_PER_EPOCH
    assert not (tmp_path / 'epoch_2.pth').exists() and not list(tmp_path.glob('.*.part'))
    _assert_same_end(_resume(tool, config, tmp_path, *KEEP_ONE), straight)


def test_checkpoints_load_with_plain_torch_without_divdet(straight_dir):
    """torch.load(weights_only=True) in an interpreter that never imported divdet (or
    mmengine) reads a whole resumable checkpoint; the resume tests above resume from
    such checkpoints and end where the uninterrupted run ends."""
    import subprocess
    import sys
    code = ('import sys, torch; c = torch.load(sys.argv[1], weights_only=True); '
            'assert {"state_dict", "optimizer", "message_hub", "meta"} <= set(c), sorted(c); '
            'assert c["meta"]["epoch"] == 1; '
            'assert "divdet" not in sys.modules and "mmengine" not in sys.modules')
    proc = subprocess.run([sys.executable, '-c', code, str(straight_dir / 'epoch_1.pth')],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
