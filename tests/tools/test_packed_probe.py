"""tools/analysis_tools/packed_probe.py: the members as one vmap-ed network give the
members' outputs, and the probe prints both timings and their ratio."""
import importlib.util
import re

import pytest
import torch
from torch import nn

from divdet.utils.errors import ConfigError
from tests.conftest import ROOT


def _probe_module():
    spec = importlib.util.spec_from_file_location(
        'packed_probe', ROOT / 'tools/analysis_tools/packed_probe.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _net(width):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 5, 1))


def test_packed_equals_members_and_refuses_different_members():
    probe = _probe_module()
    torch.manual_seed(0)
    nets = [_net(8).eval() for _ in range(3)]
    for n in nets:  # running statistics that differ per member
        n[1].running_mean.uniform_(-1, 1)
        n[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        packed = probe.Packed(nets)(x)
        assert packed.shape == (3, 2, 5, 10, 10)
        for i, n in enumerate(nets):
            torch.testing.assert_close(packed[i], n(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match='differ in architecture'):
        probe.Packed([_net(8), _net(16)])


def test_packed_probe_table(tool):
    out = tool('tools/analysis_tools/packed_probe.py',
               'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py',
               '--batch-sizes', '1', '2', '--repeats', '1', '--device', 'cpu').stdout
    assert 'S=2, cpu, inputs 128x128' in out
    rows = re.findall(r'^\s+(\d+)\s+([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)x\s+([\d.e+-]+)$',
                      out, re.M)
    assert [r[0] for r in rows] == ['1', '2']
    for _, seq, packed, ratio, diff in rows:
        assert float(ratio) == pytest.approx(float(packed) / float(seq), rel=0.05, abs=0.006)
        assert float(diff) < 1e-4  # packed and sequential give the same outputs


def test_packed_probe_refuses_a_classifier_config(tool):
    proc = tool('tools/analysis_tools/packed_probe.py',
                'configs/demo/resnet110-cifar_divided_1xb64-15e_digits.py', check=False)
    assert proc.returncode == 2
    assert ('packed_probe: expected a divided detector config (a model with a bbox_head), '
            'found DividedImageClassifier') in proc.stderr
