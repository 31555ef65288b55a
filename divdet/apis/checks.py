"""Start-up checks of ``tools/train.py`` and ``tools/test.py``: a config or a
checkpoint that would give a wrong number, lose files or fail after hours is
refused before the runner is built (one ``divdet: error:`` line, exit status 2).

:func:`check_config` looks at the config alone (loader sizes, seed, schedule
length, AMP, the dataset's classes against the head, the dataset's and the
evaluator's ground truth); :func:`check_checkpoint` at the config against the
checkpoint it loads or resumes (classes, the optimizer and schedule a resume
takes from the checkpoint, a moved work directory); :func:`check_work_dir`
keeps a new run from overwriting the checkpoints of an earlier one.
"""
from __future__ import annotations

import glob
import json
import os.path as osp
from typing import Any, Optional

from mmengine.config import Config
from mmengine.logging import print_log

from divdet.utils.errors import (
    AnnotationError,
    CheckpointMismatchError,
    ConfigError,
    MissingFileError,
)
from divdet.utils.ranges import check_range

#: the (loader, evaluator) pairs that must agree on the ground truth, per mode
_PAIRS = {'train': [('val_dataloader', 'val_evaluator')],
          'test': [('test_dataloader', 'test_evaluator')]}
_LOADERS = {'train': ('train_dataloader', 'val_dataloader'), 'test': ('test_dataloader',)}


def check_config(cfg: Config, mode: str) -> None:
    """Refuse config values that fail late or give wrong results (``mode``: train/test).

    Raises:
        ConfigError: a loader's ``batch_size`` < 1 or ``num_workers`` < 0, a seed
            outside [0, 2**32), a training length < 1, AMP without CUDA, a
            dataset with another number of classes than the head, a dataset and
            evaluator with different ground truth.
    """
    for name in _LOADERS[mode]:
        loader = cfg.get(name)
        if not loader:
            continue
        check_range(f'{name}.batch_size', loader.get('batch_size', 1), '[1, inf)', integer=True)
        check_range(f'{name}.num_workers', loader.get('num_workers', 0), '[0, inf)',
                    integer=True)
    seed = (cfg.get('randomness') or {}).get('seed')
    if seed is not None:
        check_range('randomness.seed', seed, f'[0, {2**32 - 1}]', integer=True)
    if mode == 'train':
        _check_train_length(cfg)
        _check_amp(cfg)
    for name in _LOADERS[mode]:
        _check_num_classes(cfg, name)
    for loader, evaluator in _PAIRS[mode]:
        _check_same_ground_truth(cfg, loader, evaluator)


def _check_train_length(cfg: Config) -> None:
    train_cfg = cfg.get('train_cfg') or {}
    for key in ('max_epochs', 'max_iters'):
        if key in train_cfg:
            check_range(f'train_cfg.{key}', train_cfg[key], '[1, inf)', integer=True)
    if 'val_interval' in train_cfg:
        check_range('train_cfg.val_interval', train_cfg['val_interval'], '[1, inf)',
                    integer=True)


def _check_amp(cfg: Config) -> None:
    import torch
    wrapper = (cfg.get('optim_wrapper') or {}).get('type')
    if wrapper in ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper') and \
            not torch.cuda.is_available():
        raise ConfigError('--amp (optim_wrapper.type=AmpOptimWrapper) needs a CUDA device and '
                          'none is available; train without --amp on this machine')


def dataset_cfg(cfg: Config, loader: str) -> Optional[dict]:
    """The dataset config of ``loader``, through wrappers (``RepeatDataset`` ...)."""
    dataset = (cfg.get(loader) or {}).get('dataset')
    while isinstance(dataset, dict) and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    return dataset if isinstance(dataset, dict) else None


def dataset_classes(cfg: Config, loader: str) -> Optional[tuple]:
    """The classes of ``loader``'s dataset: its ``metainfo.classes``, else its class's."""
    dataset = dataset_cfg(cfg, loader)
    if dataset is None:
        return None
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None:
        try:
            from mmengine.registry import DATASETS
            cls = DATASETS.get(dataset.get('type')) if isinstance(dataset.get('type'), str) \
                else dataset.get('type')
            classes = getattr(cls, 'METAINFO', {}).get('classes')
        except Exception:  # noqa: BLE001 (an unknown type fails where it is built)
            return None
    return tuple(classes) if classes is not None else None


def _head_num_classes(model: dict) -> Optional[tuple[str, int]]:
    for path in (('bbox_head', 'head'), ('bbox_head',), ('head', 'head'), ('head',)):
        node: Any = model
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get('num_classes'), int):
            return 'model.' + '.'.join(path) + '.num_classes', node['num_classes']
    return None


def _check_num_classes(cfg: Config, loader: str) -> None:
    classes = dataset_classes(cfg, loader)
    head = _head_num_classes(cfg.get('model') or {})
    if classes is None or head is None or len(classes) == head[1]:
        return
    raise ConfigError(f'{loader}.dataset has {len(classes)} classes {classes}, but '
                      f'{head[0]}={head[1]}: the labels would not fit the head (set both '
                      'from one `classes` tuple)')


def _annotation_path(dataset: dict) -> Optional[str]:
    ann = dataset.get('ann_file')
    if not isinstance(ann, str) or not ann:
        return None
    root = dataset.get('data_root')
    return ann if osp.isabs(ann) or not root else osp.join(root, ann)


def _images_of(path: str) -> dict:
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise AnnotationError(f'annotation file {path!r} cannot be read ({err})') from None
    images = data.get('images') if isinstance(data, dict) else None
    if not isinstance(images, list):
        return {}
    return {img.get('id'): img.get('file_name') for img in images if isinstance(img, dict)}


def _check_same_ground_truth(cfg: Config, loader: str, evaluator: str) -> None:
    """The evaluator's ``ann_file`` must describe the dataset's images.

    A config whose ``data_root`` was changed on the command line keeps the
    evaluator's old ``ann_file``; pycocotools would then score the predictions
    of one set of images against the boxes of another.
    """
    dataset = dataset_cfg(cfg, loader)
    metrics = cfg.get(evaluator)
    if dataset is None or not metrics:
        return
    data_ann = _annotation_path(dataset)
    if data_ann is None or not osp.isfile(data_ann):
        return
    for i, metric in enumerate(metrics if isinstance(metrics, (list, tuple)) else [metrics]):
        ann = metric.get('ann_file') if isinstance(metric, dict) else None
        if not isinstance(ann, str) or not osp.isfile(ann):
            continue
        if osp.realpath(ann) == osp.realpath(data_ann):
            continue
        with open(ann, 'rb') as f1, open(data_ann, 'rb') as f2:
            if f1.read() == f2.read():
                continue
        if _images_of(ann) != _images_of(data_ann):
            where = evaluator if not isinstance(metrics, (list, tuple)) else f'{evaluator}[{i}]'
            raise ConfigError(
                f'{where}.ann_file {ann!r} and {loader}.dataset ({data_ann!r}) list other '
                'images: the predictions would be scored against the wrong ground truth. '
                f'Point both at the same file (e.g. set {where}.ann_file too when changing '
                'data_root)')


# ---- the config against its checkpoint --------------------------------------------------

def resolve_resume(cfg: Config) -> Optional[str]:
    """The checkpoint ``--resume`` (without a path) continues from, or None.

    ``last_checkpoint`` holds an absolute path; in a work directory that was
    moved or copied, the file of that name beside it is used instead.

    Raises:
        MissingFileError: ``last_checkpoint`` names a file that exists neither
            where it says nor in the work directory.
    """
    work_dir = cfg.work_dir
    last = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(last):
        return None
    with open(last, encoding='utf-8') as f:
        named = f.read().strip()
    if osp.isfile(named):
        return named
    here = osp.join(work_dir, osp.basename(named))
    if osp.isfile(here):
        print_log(f'{last} names {named}, which does not exist (a moved work directory); '
                  f'resuming from {here}', logger='current')
        return here
    raise MissingFileError(f'--resume: {last} names the checkpoint {named!r}, which exists '
                           f'neither there nor in {work_dir!r}')


def _checkpoint_meta(path: str) -> dict:
    from divdet.utils.checkpoint import load_from_local_safe
    checkpoint = load_from_local_safe(path, map_location='cpu')
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return meta if isinstance(meta, dict) else {}


def _differences(old: Any, new: Any, where: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f'{where}.{key}')
        return out
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += _differences(a, b, f'{where}[{i}]')
        return out
    return [] if old == new else [f'{where}: {old!r} in the checkpoint, {new!r} in the config']


def check_checkpoint(cfg: Config, path: str, mode: str) -> None:
    """Refuse a checkpoint that the config would silently misuse.

    Args:
        cfg: the config of the run.
        path: the checkpoint to load (``test``, ``load_from``) or resume.
        mode: ``'test'``, ``'resume'`` or ``'load'`` (``load_from`` for training).

    Raises:
        CheckpointMismatchError: the checkpoint was trained on the same classes
            in another order (the labels would be read as other classes; at test
            and resume any other classes too); at resume, the optimizer or LR
            schedule of the config differs from the checkpoint's, which the
            resumed run would use instead.
    """
    meta = _checkpoint_meta(path)
    loader = 'test_dataloader' if mode == 'test' else 'train_dataloader'
    saved = (meta.get('dataset_meta') or {}).get('classes')
    classes = dataset_classes(cfg, loader)
    if saved is not None and classes is not None and tuple(saved) != tuple(classes):
        same_set = sorted(saved) == sorted(classes)
        if same_set or mode != 'load':
            how = 'in another order' if same_set else 'other classes'
            raise CheckpointMismatchError(
                f'{path}: the checkpoint was trained with the classes {tuple(saved)} '
                f'(meta.dataset_meta), the config gives {loader}.dataset {tuple(classes)} '
                f'({how}); every label would be read as another class. Use the '
                "checkpoint's classes in its order")
    if mode != 'resume' or not isinstance(meta.get('cfg'), str):
        return
    try:
        old = Config.fromstring(meta['cfg'], file_format='.py')
    except Exception:  # noqa: BLE001 (a config text mmengine cannot parse: nothing to compare)
        return
    diffs = []
    for key in ('optim_wrapper', 'param_scheduler'):
        diffs += _differences(old.get(key), cfg.get(key), key)
    if diffs:
        more = f' (and {len(diffs) - 3} more)' if len(diffs) > 3 else ''
        raise CheckpointMismatchError(
            f'--resume {path}: a resumed run continues with the optimizer and LR schedule of '
            f'the checkpoint, and the config changes them: {"; ".join(diffs[:3])}{more}. '
            'Resume with the original values, or start a new run in another work directory '
            f'with load_from={path!r} (weights only)')


def check_work_dir(cfg: Config, resume: bool, overwrite: bool) -> None:
    """A new run must not overwrite the checkpoints of an earlier run in its work dir.

    Raises:
        ConfigError: the work directory holds checkpoints, the run does not
            resume, and ``--overwrite`` was not given.
    """
    if resume or overwrite or not osp.isdir(cfg.work_dir):
        return
    found = sorted(glob.glob(osp.join(glob.escape(cfg.work_dir), '*.pth')))
    if found:
        raise ConfigError(
            f'the work directory {cfg.work_dir!r} holds checkpoints of an earlier run '
            f'({", ".join(osp.basename(p) for p in found[:3])}'
            f'{" ..." if len(found) > 3 else ""}) that this run would overwrite: continue it '
            'with --resume, use another --work-dir, or start over with --overwrite')


__all__ = ['check_config', 'check_checkpoint', 'check_work_dir', 'resolve_resume',
           'dataset_cfg', 'dataset_classes']
