"""Through the tools, bad input is one ``divdet: error:`` line and exit status 2,
not a traceback, and nothing is written in place of results."""
import torch

from divdet.datasets import make_shapes_dataset
from tests.tools.test_train_test_ssd import CONFIG, _data_options


def _assert_clean_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    line = [x for x in proc.stderr.splitlines() if x.startswith('divdet: error: ')]
    assert len(line) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in line[0], line[0]


def test_missing_annotation_file(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    (tmp_path / 'data' / 'annotations' / 'instances_train.json').unlink()
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                *_data_options(tmp_path / 'data'), check=False)
    _assert_clean_error(proc, 'instances_train.json', 'not found')
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_corrupt_image_in_a_dataloader_worker(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=4, num_val=2, size=64, empty_fraction=0.0)
    (tmp_path / 'data' / 'train' / '000003.jpg').write_bytes(b'garbage')
    options = [o.replace('num_workers=0', 'num_workers=1')
               for o in _data_options(tmp_path / 'data')]
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                *options, 'train_cfg.max_epochs=1', check=False)
    _assert_clean_error(proc, '000003.jpg) could not be decoded')
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_checkpoint_from_another_split_factor(tool, tmp_path):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    cfg = Config.fromfile(CONFIG)
    cfg.model.num_members = 4
    ckpt = tmp_path / 'ssd_s4.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta=dict()), ckpt)
    proc = tool('tools/test.py', CONFIG, str(ckpt), '--work-dir', str(tmp_path / 'work'),
                '--cfg-options', *_data_options(tmp_path / 'data'), check=False)
    _assert_clean_error(proc, 'the checkpoint has 4 members', 'num_members=2')
