"""What ``tools/train.py`` and ``tools/test.py`` share: config loading and runner set-up.

One pair of tools serves detection configs (``default_scope = 'mmdet'``) and
classification configs (``default_scope = 'mmpretrain'``); the few places where
the two toolboxes differ (visualisation hook fields, the dump metric) are
chosen from the config's ``default_scope``.
"""
from __future__ import annotations

import argparse
import inspect
import os
import os.path as osp
import re
import sys
from typing import Callable

from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from divdet.apis.checks import check_checkpoint, check_config, check_work_dir, resolve_resume
from divdet.apis.cli import KeyValueAction
from divdet.utils.allocator import tune_malloc
from divdet.utils.errors import ConfigError, DivdetError, MissingFileError, brief, one_line
from divdet.utils.files import check_output_dir, check_writable

SUPPORTED_SCOPES = ('mmdet', 'mmpretrain')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The options ``tools/train.py`` and ``tools/test.py`` share."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=KeyValueAction,
        help='override config settings, key=value pairs, e.g. '
        'train_cfg.max_epochs=2 model.num_members=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_cli(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line and export ``LOCAL_RANK`` for the launcher."""
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(path: str, args: argparse.Namespace) -> Config:
    """Read a config, apply ``--cfg-options``, ``--launcher`` and ``--work-dir``.

    Args:
        path: config file path.
        args: parsed command line with ``cfg_options``, ``launcher`` and
            ``work_dir``.

    Returns:
        The config, with ``work_dir`` set (CLI > config > ``./work_dirs/NAME``).

    Raises:
        MissingFileError: if ``path`` does not exist.
        ConfigError: if the config's ``default_scope`` is neither mmdet nor
            mmpretrain.
    """
    cfg = read_config(path)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        try:
            cfg.merge_from_dict(args.cfg_options)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f'--cfg-options: {one_line(err)}') from None
    scope = cfg.get('default_scope', 'mmdet')
    if scope not in SUPPORTED_SCOPES:
        raise ConfigError(f'{path}: default_scope must be one of {SUPPORTED_SCOPES}, '
                         f'found {scope!r}')
    cfg.default_scope = scope
    use_safe_checkpoint_hook(cfg)
    configure_distributed(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def read_config(path: str) -> Config:
    """``Config.fromfile`` with a broken config (syntax error, missing ``_base_``) as one line.

    Raises:
        MissingFileError: the file or one of its ``_base_`` files does not exist.
        ConfigError: the file is not a valid config.
    """
    if not osp.isfile(path):
        raise MissingFileError(f'config file {path!r} does not exist')
    try:
        return Config.fromfile(path)
    except SyntaxError as err:
        name = err.filename if err.filename and not err.filename.startswith('<') else path
        where = f'{name}, line {err.lineno}' if err.lineno else path
        raise ConfigError(f'config {where}: {err.msg}') from None
    except FileNotFoundError as err:
        raise MissingFileError(f'config {path!r}: {one_line(err)} (a _base_ file?)') from None
    except (KeyError, ValueError, TypeError, AttributeError, ImportError, NameError) as err:
        raise ConfigError(f'config {path!r} cannot be read: {type(err).__name__}: '
                          f'{one_line(err)}') from None


def use_safe_checkpoint_hook(cfg: Config) -> None:
    """Save checkpoints with :class:`~divdet.engine.hooks.SafeCheckpointHook`.

    mmengine's ``CheckpointHook`` (what mmdet's and mmpretrain's base configs
    name) deletes the oldest kept checkpoint before writing the next, so a kill
    or a full disk in between can leave none. The safe hook takes the same
    arguments; a config naming another hook type keeps it.
    """
    hook = cfg.get('default_hooks', {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        hook['type'] = 'SafeCheckpointHook'


def configure_distributed(cfg: Config) -> None:
    """Adapt a launched (``--launcher pytorch|slurm|mpi``) run to the machine.

    Without CUDA the processes talk over gloo and DDP wraps a CPU module, which
    takes ``device_ids=None`` (mmengine passes the local rank, which is only
    valid for a GPU module). ``sync_bn`` (mmengine's config key: ``'torch'``
    or ``'mmcv'``) needs CUDA; on the CPU it is refused rather than failing in
    the first forward pass. mmengine's ``init_dist`` selects a CUDA device
    unconditionally, so for ``--launcher pytorch`` on the CPU :func:`build_runner`
    opens the gloo process group itself (``torchrun``'s environment variables),
    and the Runner finds it already initialised.

    Raises:
        ConfigError: ``sync_bn`` is set and there is no CUDA device.
    """
    if cfg.launcher == 'none':
        return
    import torch
    if torch.cuda.is_available():
        return
    if cfg.get('sync_bn') is not None:
        raise ConfigError(f"sync_bn={cfg.sync_bn!r} needs CUDA devices (torch's and mmcv's "
                          'SyncBatchNorm run on GPUs only); remove it for a CPU run, where '
                          'BatchNorm statistics stay per process')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def apply_train_args(cfg: Config, args: argparse.Namespace) -> None:
    """Apply ``--amp``, ``--auto-scale-lr``, ``--resume``, ``--overwrite`` and
    ``--partial-load`` to ``cfg`` in place, and check the config and the
    checkpoint it resumes or loads (:mod:`divdet.apis.checks`) before anything
    is written."""
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ConfigError('--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=N)` '
                             'in the config; none was found')
        cfg.auto_scale_lr.enable = True
    check_config(cfg, 'train')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = resolve_resume(cfg)
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise MissingFileError(f'--resume checkpoint {args.resume!r} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    resuming = bool(cfg.get('resume')) and cfg.get('load_from') is not None
    check_work_dir(cfg, resume=resuming, overwrite=getattr(args, 'overwrite', False))
    cfg.partial_load = bool(getattr(args, 'partial_load', False))
    if cfg.partial_load and resuming:
        raise ConfigError('--partial-load is for fine-tuning from load_from; a resumed run '
                          'needs the whole checkpoint')
    if cfg.get('load_from'):
        if not osp.isfile(cfg.load_from):
            raise MissingFileError(f'load_from checkpoint {cfg.load_from!r} does not exist')
        check_checkpoint(cfg, cfg.load_from, 'resume' if resuming else 'load')


def apply_test_args(cfg: Config, args: argparse.Namespace) -> None:
    """Apply the checkpoint, ``--show`` and ``--show-dir`` to ``cfg`` in place."""
    if not osp.isfile(args.checkpoint):
        raise MissingFileError(f'checkpoint {args.checkpoint!r} does not exist')
    cfg.load_from = args.checkpoint
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ConfigError(f'--out must name a .pkl file, found {args.out!r}')
        check_writable(args.out, '--out')
    check_config(cfg, 'test')
    check_checkpoint(cfg, args.checkpoint, 'test')
    if getattr(args, 'tta', False):
        apply_tta(cfg)
    if not (args.show or args.show_dir):
        return
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise ConfigError('--show/--show-dir need `default_hooks.visualization` '
                         "(e.g. dict(type='DetVisualizationHook')) in the config")
    vis = hooks['visualization']
    vis.show = args.show
    vis.wait_time = args.wait_time
    if cfg.default_scope == 'mmdet':
        vis.draw = True
        if args.show_dir:
            vis.test_out_dir = args.show_dir
    else:
        vis.enable = True
        vis.out_dir = args.show_dir


def apply_tta(cfg: Config) -> None:
    """``--tta`` as in mmdet's ``tools/test.py``: wrap the model in ``tta_model`` and
    test with ``tta_pipeline``.

    A config without them gets mmdet's defaults (NMS 0.5, 100 per image; the image
    and its horizontal flip), with :class:`~divdet.models.DividedDetTTAModel` for a
    divided detector so that every member's views are merged as the ensemble's.

    Raises:
        ConfigError: a classification config (mmpretrain's TTA needs its own
            ``tta_model``/``tta_pipeline``, which mmpretrain's tools set).
    """
    import copy
    if cfg.default_scope != 'mmdet':
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise ConfigError('--tta needs tta_model and tta_pipeline in a classification config')
    if 'tta_model' not in cfg:
        divided = str(cfg.model.get('type', '')).startswith('Divided')
        cfg.tta_model = dict(type='DividedDetTTAModel' if divided else 'DetTTAModel',
                             tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                                          max_per_img=100))
    if 'tta_pipeline' not in cfg:
        dataset = cfg.test_dataloader.dataset
        while 'dataset' in dataset:
            dataset = dataset['dataset']
        pipeline = copy.deepcopy(dataset.pipeline)
        pipeline[-1] = dict(type='TestTimeAug', transforms=[
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                                   'img_shape', 'scale_factor', 'flip',
                                                   'flip_direction'))]])
        cfg.tta_pipeline = pipeline
    cfg.model = dict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def dump_metric(cfg: Config, out: str) -> BaseMetric:
    """The metric that collects raw predictions for ``out`` (written by :func:`write_dump`
    after the metrics, so a failed write loses no metrics)."""
    from divdet.evaluation.metrics.dump import collecting_dump_metric
    return collecting_dump_metric(cfg.default_scope, out)


def write_dump(metric: BaseMetric, out: str) -> None:
    """Write what ``metric`` collected to ``out`` (main process; atomic; one-line errors)."""
    from divdet.evaluation.metrics.dump import write_collected
    write_collected(metric, out)


def build_runner(cfg: Config) -> Runner:
    """Build the runner (``runner_type`` from the registry if the config sets one).

    The work directory is checked first (a file, or a folder that cannot be
    created or written, is one line). A divided model refuses a checkpoint that
    does not fit it whole, unless the config sets ``partial_load``
    (``tools/train.py --partial-load``).
    """
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    check_output_dir(cfg.work_dir, 'work_dir')
    setup_cache_size_limit_of_dynamo()
    backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend')
    if cfg.get('launcher') == 'pytorch' and backend == 'gloo':
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    model = getattr(runner.model, 'module', runner.model)
    if hasattr(model, 'partial_checkpoint'):
        model.partial_checkpoint = bool(cfg.get('partial_load', False))
    return runner


def run_main(main: Callable[[], None], malloc: bool = True) -> None:
    """Run a tool's ``main``; an input error is one ``divdet: error:`` line and exit status 2.

    :class:`~divdet.utils.DivdetError` means the user's data, config or
    checkpoint needs fixing, and the message says how; a traceback would only
    bury it. Any other exception is a bug and keeps its traceback.
    """
    if malloc:  # the allocator setting that measured faster (divdet.utils.allocator)
        tune_malloc()
    try:
        main()
    except DivdetError as err:
        print(f'divdet: error: {brief(err)}', file=sys.stderr, flush=True)
        sys.exit(2)
    except TypeError as err:
        unknown = unknown_config_key(err)
        if unknown is None:
            raise
        print(f'divdet: error: {unknown}', file=sys.stderr, flush=True)
        sys.exit(2)


#: A constructor's TypeError for a keyword it does not take.
_UNKNOWN_KEY = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'$")


def unknown_config_key(err: TypeError) -> str | None:
    """A one-line message for a config key that a built class does not accept.

    Returns None unless ``err`` says that some ``__init__`` got an unexpected
    keyword, the call happened while mmengine's ``build_from_cfg`` built a class
    from a config dict, and that keyword is a key of that config dict (at any
    depth): exactly a misspelt config (or ``--cfg-options``) key. Any other
    TypeError is a bug and keeps its traceback.
    """
    found = _UNKNOWN_KEY.search(str(err))
    if found is None:
        return None
    name, key = found.groups()
    built, tb = None, err.__traceback__
    while tb is not None:  # the innermost build_from_cfg frame: what was being built
        if tb.tb_frame.f_code.co_name == 'build_from_cfg':
            built = tb.tb_frame.f_locals
        tb = tb.tb_next
    if built is None or not _has_key(built.get('cfg'), key):
        return None
    cls = built.get('obj_cls')
    owner = cls.__name__ if isinstance(cls, type) else '?'
    where = '' if owner == name else f' (in the config of {owner})'
    accepted = ''
    if isinstance(cls, type) and owner == name:
        accepted = f'; it accepts {", ".join(_init_params(cls))}'
    return (f'config key {key!r}{where} is not an argument of {name}{accepted} '
            f'(check the config and --cfg-options for a misspelt key)')


def _has_key(cfg, key: str) -> bool:
    if isinstance(cfg, dict):
        return key in cfg or any(_has_key(v, key) for v in cfg.values())
    if isinstance(cfg, (list, tuple)):
        return any(_has_key(v, key) for v in cfg)
    return False


def _init_params(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` takes, following ``**kwargs`` up the MRO."""
    params: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            sig = list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):
            break
        params += [p.name for p in sig if p.name != 'self' and p.name not in params
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in sig):
            break
    return params
