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


@pytest.mark.parametrize('path', CONFIGS)
def test_detection_configs_use_the_checked_components(path):
    """Every divided detector config reads its data through the checked dataset, keeps
    checkpoints with SafeCheckpointHook and reports every member (DividedCocoMetric),
    whatever its mmdet base set."""
    cfg = Config.fromfile(str(ROOT / path))
    if cfg.get('default_scope', 'mmdet') != 'mmdet' or 'bbox_head' not in cfg.model:
        pytest.skip('not a detection config')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        while dataset.get('type') in ('RepeatDataset', 'ClassBalancedDataset'):
            dataset = dataset.dataset
        assert dataset.type == 'CheckedCocoDataset', loader
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    assert cfg.model.data_preprocessor.type == 'CheckedDetDataPreprocessor'
    for evaluator in ('val_evaluator', 'test_evaluator'):
        assert cfg[evaluator].type == 'DividedCocoMetric', evaluator
    assert 'CoTrainingHook' in [h['type'] for h in cfg.custom_hooks]
