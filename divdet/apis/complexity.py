"""Parameters and FLOPs of a divided model, per member and in total."""
from __future__ import annotations

import re
from collections import defaultdict

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

_MEMBER = re.compile(r'(^|\.)members\.(\d+)(\.|$)')


def member_of(name: str, model: nn.Module) -> int | None:
    """The member a parameter/module name belongs to, or None if it is shared.

    A name under ``X.members.i`` belongs to member ``i`` when ``X`` has one
    entry per member; a shared head (``members`` of length 1 while S > 1) and
    everything outside divided parts (e.g. the data preprocessor) is shared.
    """
    match = _MEMBER.search(name)
    if match is None:
        return None
    owner = model.get_submodule(name[:match.start()]) if match.start() else model
    if len(owner.members) != getattr(owner, 'num_members', len(owner.members)):
        return None
    return int(match.group(2))


class _TensorForward(nn.Module):
    """Wraps a model so that a tracer sees ``model(inputs, mode='tensor')``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, mode='tensor')


def complexity(model: nn.Module, input_shape: tuple[int, int, int]) -> dict:
    """Parameters and FLOPs (multiply-adds, as mmengine counts them) per member.

    Args:
        model: a built mmdet / mmpretrain model (divided or not).
        input_shape: (C, H, W) of one input image.

    Returns:
        ``{'members': [{'params': p, 'flops': f}, ...], 'shared': {...},
        'total': {...}}``; a model without divided parts has no members.
    """
    params = defaultdict(int)
    for name, p in model.named_parameters():
        params[member_of(name, model)] += p.numel()
    model.eval()
    analyzer = FlopAnalyzer(_TensorForward(model), (torch.zeros(1, *input_shape), ))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_module = analyzer.by_module()
    total_flops = analyzer.total()
    flops = defaultdict(int)
    for name, count in by_module.items():
        name = name[len('model.'):] if name.startswith('model.') else None
        if not name:
            continue
        match = _MEMBER.search(name)
        # count each member subtree once, at the ``members.i`` module itself
        if match and match.end() == len(name) and member_of(name, model) is not None:
            flops[int(match.group(2))] += count
    num = max([k for k in params if k is not None] + [-1]) + 1
    members = [dict(params=params[i], flops=flops[i]) for i in range(num)]
    shared = dict(params=params[None], flops=total_flops - sum(flops.values()))
    return dict(members=members, shared=shared,
                total=dict(params=sum(params.values()), flops=total_flops))


def default_input_shape(cfg, config_path: str) -> tuple[int, int]:
    """The (H, W) at which divdet quotes FLOPs for a config: what its test pipeline
    feeds the model.

    The last transform of ``test_dataloader``'s pipeline that sets the size
    (``Resize`` with a fixed ``scale`` and ``keep_ratio=False``, ``CenterCrop``,
    ``RandomCrop``), else the config's ``input_size``, else 300x300 for detection
    (SSD300), 32x32 for CIFAR configs and 224x224 for other classification configs.
    """
    import os.path as osp
    shape = _pipeline_shape(_test_pipeline(cfg))
    if shape:
        return shape
    size = cfg.get('input_size')
    if isinstance(size, int) and size > 0:
        return (size, size)
    if cfg.get('default_scope', 'mmdet') == 'mmdet':
        return (300, 300)
    return (32, 32) if 'cifar' in osp.basename(config_path) else (224, 224)


def _test_pipeline(cfg) -> list:
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    while 'pipeline' not in dataset and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']  # wrappers (RepeatDataset, ClassBalancedDataset, ...)
    return list(dataset.get('pipeline') or [])


def _square(value) -> tuple[int, int] | None:
    """(H, W) of an mmcv size: an int, or a (W, H) pair."""
    if isinstance(value, int) and value > 0:
        return (value, value)
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and v > 0 for v in value)):
        return (value[1], value[0])
    return None


def _pipeline_shape(pipeline: list) -> tuple[int, int] | None:
    shape = None
    for step in pipeline:
        kind = str(step.get('type', '')).split('.')[-1]
        if kind == 'Resize' and not step.get('keep_ratio', False):
            shape = _square(step.get('scale')) or shape
        elif kind in ('CenterCrop', 'RandomCrop'):
            shape = _square(step.get('crop_size')) or shape
    return shape


def config_complexity(cfg, config_path: str, shape: tuple[int, int] | None = None) -> dict:
    """:func:`complexity` of the model a loaded config builds, at ``shape`` (H, W)
    or :func:`default_input_shape`; the result also holds ``'shape'``."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    shape = tuple(shape or default_input_shape(cfg, config_path))
    result = complexity(MODELS.build(cfg.model), (3, *shape))
    result['shape'] = shape
    return result


#: The profiler range around the members' decoding, score filter and NMS
#: (``DividedSSDHead.predict_members``).
POST_PROCESS_RANGE = 'divdet::post_process'
#: The profiler range around the members' detection losses and the co-training term.
LOSS_RANGE = 'divdet::loss'
#: The profiler range around the fusion of the members' detections.
FUSION_RANGE = 'divdet::fusion'


def count_ops_by_range(fn, ranges: tuple[str, ...] = (LOSS_RANGE, POST_PROCESS_RANGE,
                                                       FUSION_RANGE)) -> dict[str, int]:
    """Top-level operators (``aten::``, ``torchvision::``, ...) dispatched by ``fn()``,
    in all (``'total'``) and within each of the profiler ``ranges``
    (``torch.profiler.record_function`` names; an operator is counted in the
    innermost of them).

    A device-independent proxy for kernel launches (each top-level operator is
    at least one launch on a GPU), measured with ``torch.profiler`` on the CPU.
    An operator called by another (``aten::`` ops inside ``torchvision::nms``) is
    not counted again; the backward pass's operators are counted where autograd
    runs them, outside every range.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()

    def is_op(name: str) -> bool:
        return '::' in name and not name.startswith('divdet::')
    counts = dict.fromkeys(('total', *ranges), 0)
    for event in prof.events():
        if not is_op(event.name):
            continue
        parent, where, top = event.cpu_parent, None, True
        while parent is not None:
            top &= not is_op(parent.name)
            if where is None and parent.name in counts:
                where = parent.name
            parent = parent.cpu_parent
        if top:
            counts['total'] += 1
            if where is not None:
                counts[where] += 1
    return counts


def count_ops(fn) -> tuple[int, int]:
    """Top-level operators dispatched by ``fn()``: in all, and within
    :data:`POST_PROCESS_RANGE` (:func:`count_ops_by_range`)."""
    counts = count_ops_by_range(fn, (POST_PROCESS_RANGE, ))
    return counts['total'], counts[POST_PROCESS_RANGE]
