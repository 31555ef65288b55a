"""Through the tools, bad input is one ``divdet: error:`` line and exit status 2,
not a traceback, and nothing is written in place of results."""
import os

import pytest
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


@pytest.mark.parametrize('content', [b'garbage', b''])
def test_corrupt_image_in_a_dataloader_worker(tool, tmp_path, content):
    """Found when loaded (start-up checks off): the worker's multi-line cv2 message
    still ends as one line naming the image (a 0-byte file printed only ')')."""
    make_shapes_dataset(tmp_path / 'data', num_train=4, num_val=2, size=64, empty_fraction=0.0)
    (tmp_path / 'data' / 'train' / '000003.jpg').write_bytes(content)
    options = [o.replace('num_workers=0', 'num_workers=1')
               for o in _data_options(tmp_path / 'data')]
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                *options, 'train_cfg.max_epochs=1', 'train_dataloader.dataset.check_images=False',
                check=False)
    _assert_clean_error(proc, '000003.jpg) could not be decoded; the file is corrupt')
    assert not list((tmp_path / 'work').glob('*.pth'))


def test_unreadable_image_found_at_start_up(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=4, num_val=2, size=64, empty_fraction=0.0)
    (tmp_path / 'data' / 'train' / '000003.jpg').write_bytes(b'')
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                *_data_options(tmp_path / 'data'), check=False)
    _assert_clean_error(proc, '1 listed images cannot be read', '000003.jpg')


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


def _checkpoint(tmp_path, **model_options):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(CONFIG)
    cfg.model.update(model_options)
    path = tmp_path / 'model.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta=dict()), path)
    return path


class _Payload:
    def __reduce__(self):
        return os.system, ('echo pwned',)


@pytest.mark.parametrize('case', ['pickle', 'random', 'truncated'])
def test_refused_checkpoint_is_one_line(tool, tmp_path, case):
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    path = tmp_path / 'bad.pth'
    if case == 'pickle':
        torch.save(dict(state_dict=_Payload()), path)
    elif case == 'random':
        path.write_bytes(os.urandom(4096))
    else:
        data = _checkpoint(tmp_path).read_bytes()
        path.write_bytes(data[:len(data) // 2])
    proc = tool('tools/test.py', CONFIG, str(path), '--work-dir', str(tmp_path / 'work'),
                '--cfg-options', *_data_options(tmp_path / 'data'), check=False)
    _assert_clean_error(proc, f'checkpoint {str(path)!r}' if case == 'pickle' else str(path))
    assert 'pwned' not in proc.stdout
    line = next(x for x in proc.stderr.splitlines() if x.startswith('divdet: error: '))
    if case == 'pickle':
        assert 'posix.system' in line, line
    else:
        reason = line.split('is not a readable torch checkpoint', 1)[1]
        assert len(reason.strip(' ():')) > 10, line


@pytest.mark.parametrize('option, fragment', [
    ('model.num_members=0', 'num_members must be a positive integer, found 0'),
    ('model.num_members=-1', 'num_members must be a positive integer, found -1'),
    ('model.num_members=two', "num_members must be a positive integer, found 'two'"),
    ('model.backbone.num_members=4',
     'model.backbone.num_members=4 disagrees with model.num_members=2'),
    ('model.num_member=2', "config key 'num_member' is not an argument of "
     'DividedSingleStageDetector; it accepts num_members, backbone, bbox_head'),
    ('model.backbone.depthh=2', "config key 'depthh' (in the config of DividedResNet) is not "
     'an argument of ResNet'),
    ('model.bbox_head.head.num_classs=3', "config key 'num_classs' is not an argument of "
     'SSDHead; it accepts num_classes'),
])
def test_bad_model_options_are_one_line(tool, tmp_path, option, fragment):
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                *_data_options(tmp_path / 'data'), option, check=False)
    _assert_clean_error(proc, fragment)


def test_unwritable_out_fails_before_the_run(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    ckpt = _checkpoint(tmp_path)
    (tmp_path / 'file').write_text('a file, not a folder')
    out = tmp_path / 'file' / 'preds.pkl'
    proc = tool('tools/test.py', CONFIG, str(ckpt), '--work-dir', str(tmp_path / 'work'),
                '--out', str(out), '--cfg-options', *_data_options(tmp_path / 'data'),
                check=False)
    _assert_clean_error(proc, f'--out {str(out)!r}: cannot create the folder')
    assert 'Evaluating' not in proc.stdout + proc.stderr
