"""Every public divdet component is registered in mmdet's and mmpretrain's registries."""
import importlib
import inspect
import pkgutil

import pytest
import torch.nn as nn
from mmcv.transforms import BaseTransform
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.optim import DefaultOptimWrapperConstructor

import divdet
from divdet.registry import REGISTRIES

#: base class -> registry name; public subclasses must be registered.
KINDS = {nn.Module: 'MODELS', Hook: 'HOOKS', BaseMetric: 'METRICS', BaseTransform: 'TRANSFORMS',
         BaseDataset: 'DATASETS', DefaultOptimWrapperConstructor: 'OPTIM_WRAPPER_CONSTRUCTORS'}
#: Building blocks used inside registered modules, not built from configs (DividedPart:
#: the base class of the divided parts; ExportableDetector: the export tool's wrapper of
#: a built detector).
NOT_BUILT_FROM_CONFIGS = {'WideBottleneck', 'PreActBlock', 'DividedPart', 'StagedMember',
                          'PyramidBottleneck', 'ShakeShortcut', 'ShakeBlock', 'ShakeDrop',
                          'SENetBottleneck', 'ExportableDetector'}


def _public_classes():
    found = {}
    for info in pkgutil.walk_packages(divdet.__path__, 'divdet.'):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and obj.__module__ == module.__name__
                    and not name.startswith('_') and name not in NOT_BUILT_FROM_CONFIGS
                    and issubclass(obj, tuple(KINDS))):
                found[name] = obj
    return found


CLASSES = _public_classes()


def test_components_were_found():
    assert {'DividedResNet', 'CoTrainingLoss', 'CoTrainingHook'} <= set(CLASSES)


@pytest.mark.parametrize('name', sorted(CLASSES))
def test_registered(name):
    cls = CLASSES[name]
    kinds = [kind for base, kind in KINDS.items() if issubclass(cls, base)]
    for registry in REGISTRIES[kinds[0]]:
        assert registry.get(name) is cls, f'{name} missing from {registry.scope}.{kinds[0]}'
