"""Optimizer wrapper constructor with the paper's weight-decay rules."""
from __future__ import annotations

from typing import Optional

import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from divdet.models.backbones.division import weight_decay_scale
from divdet.registry import register_optim_constructor


def find_num_members(model: nn.Module) -> int:
    """The split factor S of a model: its own ``num_members`` or its first divided part's."""
    if is_model_wrapper(model):
        model = model.module
    for module in model.modules():
        if isinstance(getattr(module, 'num_members', None), int):
            return module.num_members
    return 1


@register_optim_constructor
class DividedOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus the weight-decay rules of the paper.

    - No weight decay on norm and bias parameters: ``norm_decay_mult`` and
      ``bias_decay_mult`` default to 0 (set them in ``paramwise_cfg`` to override).
    - ``scale_weight_decay=True`` (a key of ``optim_wrapper``) multiplies the
      optimizer's weight decay by ``exp(1/S - 1)`` (x0.607 at S=2, x0.472 at
      S=4), S read from the model, so S stays written once in the config.

    Example::

        optim_wrapper = dict(
            constructor='DividedOptimWrapperConstructor',
            scale_weight_decay=True,
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.scale_weight_decay = bool(optim_wrapper_cfg.pop('scale_weight_decay', False))
        paramwise_cfg = dict(paramwise_cfg or {})
        paramwise_cfg.setdefault('norm_decay_mult', 0.0)
        paramwise_cfg.setdefault('bias_decay_mult', 0.0)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.unscaled_wd = self.base_wd

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer wrapper for ``model``."""
        if self.scale_weight_decay and self.unscaled_wd is not None:
            self.base_wd = self.unscaled_wd * weight_decay_scale(find_num_members(model))
            self.optimizer_cfg['weight_decay'] = self.base_wd
        return super().__call__(model)
