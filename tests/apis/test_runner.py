"""Launcher set-up of the tools: CPU runs use gloo; SyncBN on the CPU is refused."""
import argparse

import pytest
import torch

from divdet.apis import load_config
from divdet.utils import ConfigError

CONFIG = 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py'


def _args(launcher, options=None):
    return argparse.Namespace(launcher=launcher, cfg_options=options, work_dir=None)


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_cpu_launch_uses_gloo_and_a_cpu_ddp_wrapper():
    cfg = load_config(CONFIG, _args('pytorch'))
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
    assert 'model_wrapper_cfg' not in load_config(CONFIG, _args('none'))


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_sync_bn_on_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="sync_bn='torch' needs CUDA devices"):
        load_config(CONFIG, _args('pytorch', {'sync_bn': 'torch'}))
