"""Start-up checks of train.py / test.py (divdet.apis.checks): a config or a checkpoint
that would give a wrong number, lose files or fail late is refused in one line."""
import argparse
import json
import shutil

import pytest
import torch

from divdet.apis import load_config
from divdet.apis.checks import (
    check_checkpoint,
    check_config,
    check_work_dir,
    resolve_resume,
)
from divdet.datasets import make_shapes_dataset
from divdet.utils import CheckpointMismatchError, ConfigError, MissingFileError

CONFIG = 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py'
CLASSES = ('circle', 'square', 'triangle')


def _cfg(options=None, work_dir=None):
    """The demo config with ``KEY=VALUE`` options, as ``--cfg-options`` parses them."""
    from mmengine.config import DictAction
    parsed = {k: DictAction._parse_iterable(v) for k, v in
              (o.split('=', 1) for o in options or [])} or None
    return load_config(CONFIG, argparse.Namespace(launcher='none', cfg_options=parsed,
                                                  work_dir=work_dir))


def _data(root, seed=0):
    make_shapes_dataset(root, num_train=2, num_val=3, size=48, seed=seed)
    return [f'{loader}.dataset.data_root={root}/' for loader in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')] + [
        f'{e}.ann_file={root}/annotations/instances_val.json'
        for e in ('val_evaluator', 'test_evaluator')]


def test_the_demo_config_passes(tmp_path):
    cfg = _cfg(_data(tmp_path / 'data'))
    check_config(cfg, 'train')
    check_config(cfg, 'test')


@pytest.mark.parametrize('option, message', [
    ('train_dataloader.batch_size=0',
     r'train_dataloader.batch_size must be in \[1, inf\), found 0'),
    ('test_dataloader.num_workers=-1',
     r'test_dataloader.num_workers must be in \[0, inf\), found -1'),
    ('randomness.seed=-1', r'randomness.seed must be in \[0, 4294967295\], found -1'),
    ('train_cfg.max_epochs=0', r'train_cfg.max_epochs must be in \[1, inf\), found 0'),
    ("optim_wrapper.type='AmpOptimWrapper'", r'--amp .* needs a CUDA device'),
    ("model.bbox_head.head.num_classes=2",
     r"has 3 classes \('circle', 'square', 'triangle'\), but model.bbox_head.head.num_classes=2"),
])
def test_bad_values_are_refused(tmp_path, option, message):
    if 'Amp' in option and torch.cuda.is_available():
        pytest.skip('the CPU path')
    cfg = _cfg(_data(tmp_path / 'data') + [option])
    mode = 'test' if option.startswith('test_') else 'train'
    with pytest.raises(ConfigError, match=message):
        check_config(cfg, mode)


def test_classes_of_a_dataset_against_the_head_at_test_time(tmp_path):
    cfg = _cfg(_data(tmp_path / 'data') +
               ["test_dataloader.dataset.metainfo.classes=('circle', 'square')"])
    with pytest.raises(ConfigError, match=r"test_dataloader.dataset has 2 classes"):
        check_config(cfg, 'test')


def test_a_changed_data_root_without_the_evaluator_is_refused(tmp_path):
    """Only test_dataloader.dataset.data_root changed: the evaluator would score the
    predictions of the new images against the old file's boxes (AP 0)."""
    options = _data(tmp_path / 'old')
    make_shapes_dataset(tmp_path / 'new', num_train=2, num_val=4, size=48, seed=5)
    cfg = _cfg(options + [f'test_dataloader.dataset.data_root={tmp_path}/new/'])
    with pytest.raises(ConfigError, match=r"test_evaluator.ann_file '.*old/annotations/"
                                          r"instances_val.json' and test_dataloader.dataset "
                                          r"\('.*new/annotations/instances_val.json'\) list "
                                          'other images'):
        check_config(cfg, 'test')
    # the same images in another file (a copy) are fine
    shutil.copytree(tmp_path / 'old', tmp_path / 'copy')
    check_config(_cfg(options + [f'test_dataloader.dataset.data_root={tmp_path}/copy/']),
                 'test')


def _save(path, classes=CLASSES, lr=0.02):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    cfg.optim_wrapper.optimizer.lr = lr
    torch.save(dict(state_dict={}, meta=dict(dataset_meta=dict(classes=classes),
                                             cfg=cfg.pretty_text)), path)
    return str(path)


def test_classes_in_another_order_than_the_checkpoint_are_refused(tmp_path):
    cfg = _cfg(_data(tmp_path / 'data'))
    ckpt = _save(tmp_path / 'a.pth', classes=('square', 'circle', 'triangle'))
    for mode in ('test', 'resume', 'load'):
        with pytest.raises(CheckpointMismatchError, match=r"trained with the classes \('square', "
                                                          r"'circle', 'triangle'\).*another order"):
            check_checkpoint(cfg, ckpt, mode)
    check_checkpoint(cfg, _save(tmp_path / 'b.pth'), 'test')
    other = _save(tmp_path / 'c.pth', classes=('cat', 'dog', 'bird'))
    with pytest.raises(CheckpointMismatchError, match='other classes'):
        check_checkpoint(cfg, other, 'test')
    check_checkpoint(cfg, other, 'load')  # fine-tuning from other classes stays possible


def test_resume_with_a_changed_learning_rate_is_refused(tmp_path):
    cfg = _cfg(_data(tmp_path / 'data') + ['optim_wrapper.optimizer.lr=0.04'])
    ckpt = _save(tmp_path / 'a.pth', lr=0.02)
    with pytest.raises(CheckpointMismatchError, match=r'optim_wrapper.optimizer.lr: 0.02 in the '
                                                      r'checkpoint, 0.04 in the config'):
        check_checkpoint(cfg, ckpt, 'resume')
    check_checkpoint(cfg, ckpt, 'load')  # weights only: the config's schedule applies
    check_checkpoint(_cfg(_data(tmp_path / 'data')), ckpt, 'resume')


def test_resume_in_a_moved_work_dir(tmp_path):
    old, new = tmp_path / 'old', tmp_path / 'new'
    old.mkdir()
    (old / 'epoch_1.pth').write_bytes(b'x')
    (old / 'last_checkpoint').write_text(str(old / 'epoch_1.pth'))
    shutil.move(str(old), str(new))
    assert resolve_resume(_cfg(work_dir=str(new))) == str(new / 'epoch_1.pth')
    (new / 'epoch_1.pth').unlink()
    with pytest.raises(MissingFileError, match='names the checkpoint .*epoch_1.pth'):
        resolve_resume(_cfg(work_dir=str(new)))
    assert resolve_resume(_cfg(work_dir=str(tmp_path / 'none'))) is None


def test_a_new_run_does_not_overwrite_checkpoints(tmp_path):
    cfg = _cfg(work_dir=str(tmp_path))
    check_work_dir(cfg, resume=False, overwrite=False)  # empty: fine
    (tmp_path / 'epoch_3.pth').write_bytes(b'x')
    with pytest.raises(ConfigError, match=r"holds checkpoints of an earlier run \(epoch_3.pth\)"
                                          '.*--resume.*--overwrite'):
        check_work_dir(cfg, resume=False, overwrite=False)
    check_work_dir(cfg, resume=True, overwrite=False)
    check_work_dir(cfg, resume=False, overwrite=True)


def test_evaluator_list_and_unreadable_json_are_handled(tmp_path):
    options = _data(tmp_path / 'data')
    cfg = _cfg(options)
    cfg.test_evaluator = [dict(cfg.test_evaluator)]
    check_config(cfg, 'test')
    ann = json.loads((tmp_path / 'data/annotations/instances_val.json').read_text())
    ann['images'] = ann['images'][:1]
    (tmp_path / 'one.json').write_text(json.dumps(ann))
    cfg.test_evaluator[0]['ann_file'] = str(tmp_path / 'one.json')
    with pytest.raises(ConfigError, match=r'test_evaluator\[0\].ann_file'):
        check_config(cfg, 'test')
