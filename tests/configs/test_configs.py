"""Every config in configs/ builds, and one forward pass runs at a small input size."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.conftest import ROOT

CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)


def test_configs_found():
    assert 'configs/ssd_divided_resnet50_coco.py' in CONFIGS and len(CONFIGS) >= 10


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_and_runs_forward(path):
    cfg = Config.fromfile(str(ROOT / path))
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    model.eval()
    num_members = cfg.model.get('num_members', 1)
    assert num_members == getattr(model, 'num_members', 1)
    # detection configs run at their own input size (SSD's extra layers need it)
    size = cfg.get('input_size', 32 if 'cifar' in Path(path).name else 64)
    with torch.no_grad():
        out = model(torch.rand(1, 3, size, size) * 255, mode='tensor')
    flat = [t for t in _leaves(out)]
    assert flat and all(torch.isfinite(t).all() for t in flat)


def _leaves(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _leaves(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _leaves(item)
