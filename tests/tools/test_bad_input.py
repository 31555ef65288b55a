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


# ---- the command line ------------------------------------------------------------------

@pytest.mark.parametrize('args, fragment', [
    (['tools/train.py', CONFIG, '--cfg-options', 'train_cfg.max_epochs'],
     "train.py: --cfg-options: expected KEY=VALUE items, found 'train_cfg.max_epochs'"),
    (['tools/analysis_tools/fuse_results.py', 'ann.json'],
     'fuse_results.py: the following arguments are required: results'),
    (['tools/test.py'], 'test.py: the following arguments are required: config, checkpoint'),
])
def test_usage_errors_are_one_line(tool, args, fragment):
    proc = tool(*args, check=False)
    _assert_clean_error(proc, fragment)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # no usage block


@pytest.mark.parametrize('text, fragment', [
    ('x = (\n', "line 1: '(' was never closed"),
    ("_base_ = './nope.py'\n", 'nope.py'),
])
def test_broken_config_is_one_line(tool, tmp_path, text, fragment):
    config = tmp_path / 'broken.py'
    config.write_text(text)
    _assert_clean_error(tool('tools/train.py', str(config), '--work-dir', str(tmp_path / 'w'),
                             check=False), fragment)


def test_work_dir_under_a_file(tool, tmp_path):
    (tmp_path / 'file').write_text('x')
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(tmp_path / 'file' / 'w'),
                '--cfg-options', *_data_options(tmp_path / 'data'), check=False)
    _assert_clean_error(proc, "work_dir '", 'cannot create the folder')


# ---- runs that would overwrite, or train on another schedule than they show ----------------

def test_rerun_and_resume_keep_the_earlier_run(tool, tmp_path):
    """A second run in a work dir with checkpoints is refused (the checkpoint is kept);
    --resume with another learning rate is refused without rewriting the dumped config;
    a moved work dir resumes from the checkpoint beside last_checkpoint."""
    make_shapes_dataset(tmp_path / 'data', num_train=4, num_val=2, size=64)
    work = tmp_path / 'work'
    options = ['--cfg-options', *_data_options(tmp_path / 'data'), 'train_cfg.max_epochs=1']
    tool('tools/train.py', CONFIG, '--work-dir', str(work), *options)
    ckpt = work / 'epoch_1.pth'
    before = ckpt.read_bytes()
    dumped = work / 'ssd128_divided-resnet18-d_1xb16-24e_shapes.py'
    config_before = dumped.read_text()
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(work), *options, check=False)
    _assert_clean_error(proc, 'holds checkpoints of an earlier run (epoch_1.pth)', '--resume',
                        '--overwrite')
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(work), '--resume', *options,
                'optim_wrapper.optimizer.lr=0.04', check=False)
    _assert_clean_error(proc, 'optim_wrapper.optimizer.lr: 0.02 in the checkpoint, 0.04 in the '
                        'config')
    assert ckpt.read_bytes() == before and dumped.read_text() == config_before
    moved = tmp_path / 'moved'
    work.rename(moved)
    proc = tool('tools/train.py', CONFIG, '--work-dir', str(moved), '--resume', *options)
    assert f'resuming from {moved}/epoch_1.pth' in proc.stdout + proc.stderr


# ---- checkpoints that do not fit the config ---------------------------------------------------

@pytest.mark.parametrize('option, fragment', [
    ('model.bbox_head.share_head=True', 'unexpected: bbox_head.members.1.'),
    ('model.neck.norm_cfg=None', 'unexpected: neck.'),
])
def test_neck_or_head_keys_that_do_not_fit_are_refused_at_test_time(tool, tmp_path, option,
                                                                    fragment):
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    ckpt = _checkpoint(tmp_path)
    proc = tool('tools/test.py', CONFIG, str(ckpt), '--work-dir', str(tmp_path / 'work'),
                '--cfg-options', *_data_options(tmp_path / 'data'), option, check=False)
    _assert_clean_error(proc, "the checkpoint's tensors do not fit the config's model outside "
                        'the backbone', fragment)


def test_classes_in_another_order_than_the_checkpoint(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    ckpt = _checkpoint(tmp_path)
    state = torch.load(ckpt, weights_only=True)
    state['meta'] = dict(dataset_meta=dict(classes=('square', 'circle', 'triangle')))
    torch.save(state, ckpt)
    proc = tool('tools/test.py', CONFIG, str(ckpt), '--work-dir', str(tmp_path / 'work'),
                '--cfg-options', *_data_options(tmp_path / 'data'), check=False)
    _assert_clean_error(proc, "trained with the classes ('square', 'circle', 'triangle')",
                        'another order')


def test_data_root_changed_without_the_evaluator(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'old', num_train=2, num_val=2, size=64, seed=0)
    make_shapes_dataset(tmp_path / 'new', num_train=2, num_val=3, size=64, seed=1)
    proc = tool('tools/test.py', CONFIG, str(_checkpoint(tmp_path)), '--work-dir',
                str(tmp_path / 'work'), '--cfg-options', *_data_options(tmp_path / 'old'),
                f'test_dataloader.dataset.data_root={tmp_path}/new/', check=False)
    _assert_clean_error(proc, 'test_evaluator.ann_file', 'list other images')


@pytest.mark.parametrize('option, fragment', [
    ('model.test_cfg.ensemble.iou_thr=2', r'test_cfg.ensemble: WeightedBoxesFusion.iou_thr must '
                                          r'be in (0, 1], found 2'),
    ('model.test_cfg.max_per_img=0', 'test_cfg.max_per_img must be in [1, inf), found 0'),
    ('model.test_cfg.score_thr=1.5', 'test_cfg.score_thr must be in [0, 1), found 1.5'),
])
def test_post_processing_out_of_range(tool, tmp_path, option, fragment):
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    proc = tool('tools/test.py', CONFIG, str(_checkpoint(tmp_path)), '--work-dir',
                str(tmp_path / 'work'), '--cfg-options', *_data_options(tmp_path / 'data'),
                option, check=False)
    _assert_clean_error(proc, fragment)


# ---- outputs ---------------------------------------------------------------------------------

_FULL_DISK = """
import errno, os, runpy, sys
import divdet.utils.files as files
real = files.atomic_write
def atomic_write(data, path):
    if str(path).endswith('.pkl'):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(data, path)
files.atomic_write = atomic_write
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_out_that_fails_after_inference_keeps_the_metrics(tool, tmp_path):
    """A full disk when the --out pickle is written: one line, and the metrics of the run
    are already written (they used to be lost with a traceback)."""
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    work = tmp_path / 'work'
    proc = tool('-c', _FULL_DISK, 'tools/test.py', CONFIG, str(_checkpoint(tmp_path)),
                '--work-dir', str(work), '--out', str(tmp_path / 'preds.pkl'), '--cfg-options',
                *_data_options(tmp_path / 'data'), check=False)
    _assert_clean_error(proc, f"--out '{tmp_path}/preds.pkl' could not be written (No space left "
                        'on device)')
    metrics = list(work.glob('*/*.json'))
    assert metrics and 'coco/bbox_mAP' in metrics[0].read_text()
    assert not (tmp_path / 'preds.pkl').exists()


def test_test_time_augmentation_merges_the_members(tool, tmp_path):
    make_shapes_dataset(tmp_path / 'data', num_train=2, num_val=2, size=64)
    work = tmp_path / 'work'
    proc = tool('tools/test.py', CONFIG, str(_checkpoint(tmp_path)), '--tta', '--work-dir',
                str(work), '--cfg-options', *_data_options(tmp_path / 'data'))
    assert 'not merged' not in proc.stdout + proc.stderr
    metrics = list(work.glob('*/*.json'))[0].read_text()
    assert 'coco/member1_bbox_mAP' in metrics


def test_make_shapes_out_under_a_file(tool, tmp_path):
    (tmp_path / 'file').write_text('x')
    proc = tool('tools/misc/make_shapes.py', '--out', str(tmp_path / 'file' / 'data'),
                check=False)
    _assert_clean_error(proc, 'the dataset folder', 'cannot create the folder')


def test_converter_destination_and_source_errors(tool, tmp_path):
    (tmp_path / 'file').write_text('x')
    src = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], src)
    proc = tool('tools/model_converters/torchvision2divdet.py', CONFIG, str(src),
                str(tmp_path / 'file' / 'out.pth'), check=False)
    _assert_clean_error(proc, 'the destination', 'cannot create the folder')
    proc = tool('tools/model_converters/torchvision2divdet.py', CONFIG, str(src),
                str(tmp_path / 'out.pth'), check=False)
    _assert_clean_error(proc, 'expected a state dict', 'found a list')
