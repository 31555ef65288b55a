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


def test_a_type_error_that_is_not_a_config_key_keeps_its_traceback():
    """Only a keyword that is a key of the config being built is a config error."""
    from mmengine.registry import Registry

    from divdet.apis.runner import unknown_config_key
    registry = Registry('probe')

    @registry.register_module()
    class Buggy:
        def __init__(self, width=1):
            dict.fromkeys([], 0, bogus=1)  # a bug: an unexpected keyword inside

    @registry.register_module()
    class Inner:
        def __init__(self, depth=1):
            pass

    @registry.register_module()
    class Outer:
        def __init__(self, **kwargs):
            Inner(**kwargs)

    for cfg, expected in ((dict(type='Buggy', width=2), None),
                          (dict(type='Outer', dpth=2), "config key 'dpth' (in the config of "
                           'Outer) is not an argument of Inner')):
        try:
            registry.build(cfg)
        except TypeError as err:
            message = unknown_config_key(err)
        assert (message is None) if expected is None else message.startswith(expected), message
