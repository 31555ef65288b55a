"""Register divdet components in mmdet's and mmpretrain's registries at once.

divdet's modules serve detection configs (``default_scope = 'mmdet'``) and
classification configs (``default_scope = 'mmpretrain'``), so each component is
registered in both toolboxes' registries under its class name.
"""
from __future__ import annotations

from typing import TypeVar

from mmdet import registry as det
from mmpretrain import registry as cls

T = TypeVar('T', bound=type)


def _register_in(*registries):
    def decorator(module: T) -> T:
        for registry in registries:
            registry.register_module(module=module)
        return module
    return decorator


#: nn.Modules: backbones, necks, heads, losses, detectors, classifiers.
register_model = _register_in(det.MODELS, cls.MODELS)
#: Hooks such as the co-training hook.
register_hook = _register_in(det.HOOKS, cls.HOOKS)
#: Evaluation metrics.
register_metric = _register_in(det.METRICS, cls.METRICS)
#: Data transforms.
register_transform = _register_in(det.TRANSFORMS, cls.TRANSFORMS)
#: Datasets.
register_dataset = _register_in(det.DATASETS, cls.DATASETS)
#: Optimizer wrapper constructors.
register_optim_constructor = _register_in(det.OPTIM_WRAPPER_CONSTRUCTORS,
                                          cls.OPTIM_WRAPPER_CONSTRUCTORS)

#: (base class path, registry pairs) used by the registry test: every public
#: divdet subclass of the base must be found in both registries.
REGISTRIES = {
    'MODELS': (det.MODELS, cls.MODELS),
    'HOOKS': (det.HOOKS, cls.HOOKS),
    'METRICS': (det.METRICS, cls.METRICS),
    'TRANSFORMS': (det.TRANSFORMS, cls.TRANSFORMS),
    'DATASETS': (det.DATASETS, cls.DATASETS),
    'OPTIM_WRAPPER_CONSTRUCTORS': (det.OPTIM_WRAPPER_CONSTRUCTORS,
                                   cls.OPTIM_WRAPPER_CONSTRUCTORS),
}
