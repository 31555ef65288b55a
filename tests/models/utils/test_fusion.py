"""Fused members equal the member-by-member path: outputs, gradients, BN statistics,
checkpoints."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

from divdet.models import DividedResNet
from divdet.models.utils.fusion import FusedMembers, fusable
from tests.conftest import scoped
from tests.models.ssd_factory import data_samples, detector_cfg

_scope = scoped('mmdet')
ARCHS = ['resnet18-d', 'resnet50-d', 'resnext50-32x4d', 'seresnet50', 'wide-resnet50-2',
         'resnet110-cifar', 'wrn16-8-cifar', 'resnext29-8x64d-cifar']


def _pair(arch, num_members=2, **kwargs):
    torch.manual_seed(0)
    plain = DividedResNet(arch, num_members=num_members, **kwargs)
    plain.init_weights()
    fused = DividedResNet(arch, num_members=num_members, fused=True, **kwargs)
    fused.load_state_dict(plain.state_dict())
    return plain, fused


CASES = [(arch, False) for arch in ARCHS] + [('resnet18-d', True), ('resnet110-cifar', True)]


@pytest.mark.parametrize('arch,views', CASES,
                         ids=[f"{a}-{'member-views' if v else 'shared-input'}" for a, v in CASES])
def test_backbone_forward_and_gradients_match(arch, views):
    plain, fused = _pair(arch)
    size = 16 if arch.endswith('cifar') else 32
    x = torch.randn(2, 2, 3, size, size) if views else torch.randn(2, 3, size, size)
    # float32 inference outputs agree within 1e-4
    plain.eval(), fused.eval()
    with torch.no_grad():
        for mp, mf in zip(plain(x), fused(x)):
            for a, b in zip(mp, mf):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # training: in float64 the two paths are the same computation, so gradients
    # and every member's batch-norm statistics agree to rounding (float32 train
    # mode on 1x1 maps of 2 images would amplify rounding through the BN)
    plain.train(), fused.train()
    plain.double(), fused.double()
    x = x.double()
    sum(o[0].square().mean() for o in plain(x)).backward()
    sum(o[0].square().mean() for o in fused(x)).backward()
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        assert (p.grad - q.grad).abs().max() < 1e-10, name
    for (name, b), c in zip(plain.named_buffers(), fused.buffers()):
        assert (b.double() - c.double()).abs().max() < 1e-10, name


def test_eval_cache_follows_weight_updates():
    plain, fused = _pair('resnet18-d')
    plain.eval(), fused.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fused(x)
        for p, q in zip(plain.parameters(), fused.parameters()):
            p.add_(0.01), q.add_(0.01)
        torch.testing.assert_close(plain(x)[1][0], fused(x)[1][0], atol=1e-4, rtol=1e-4)


def _detectors(**options):
    """An initialised S=2 test detector and one built with ``options`` (weights not copied)."""
    torch.manual_seed(0)
    plain = MODELS.build(ConfigDict(detector_cfg(2)))
    plain.init_weights()
    return plain, MODELS.build(ConfigDict(dict(detector_cfg(2), **options)))


def test_detector_losses_gradients_predictions_and_checkpoints_match(tmp_path):
    plain, fused = _detectors(member_execution='grouped')
    path = tmp_path / 'plain.pth'
    torch.save(plain.state_dict(), path)  # a member-by-member checkpoint loads into fused
    fused.load_state_dict(torch.load(path))
    assert fused.state_dict().keys() == plain.state_dict().keys()
    x = torch.rand(2, 3, 64, 64) * 255
    samples = data_samples([[[10, 10, 40, 40]], [[5, 5, 30, 50]]])
    lp, lf = plain.loss(x, copy.deepcopy(samples)), fused.loss(x, copy.deepcopy(samples))
    total = [sum(sum(v) if isinstance(v, list) else v for v in losses.values())
             for losses in (lp, lf)]
    for key in lp:
        torch.testing.assert_close(sum(lf[key]) if isinstance(lf[key], list) else lf[key],
                                   sum(lp[key]) if isinstance(lp[key], list) else lp[key],
                                   atol=1e-4, rtol=1e-4)
    total[0].backward(), total[1].backward()
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=name)
    plain.eval(), fused.eval()
    with torch.no_grad():
        pp = plain.predict(x, copy.deepcopy(samples))
        pf = fused.predict(x, copy.deepcopy(samples))
    for a, b in zip(pp, pf):
        torch.testing.assert_close(a.pred_instances.scores, b.pred_instances.scores,
                                   atol=1e-4, rtol=1e-4)


def test_refuses_layers_that_mix_channels():
    from mmdet.models.necks.ssd_neck import L2Norm
    members = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), L2Norm(4))
                                   for _ in range(2)])
    assert 'L2Norm' in fusable(list(members))
    with pytest.raises(ValueError, match='mixes channels'):
        FusedMembers(members)


def test_channels_last_detector_matches():
    plain, fast = _detectors(channels_last=True)
    fast.load_state_dict(plain.state_dict())
    assert fast.backbone.members[0].stem[0].conv.weight.is_contiguous(
        memory_format=torch.channels_last)
    plain.eval(), fast.eval()
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        for a, b in zip(plain._forward(x), fast._forward(x)):
            for ma, mb in zip(a, b):
                for la, lb in zip(ma, mb):
                    torch.testing.assert_close(la, lb, atol=1e-4, rtol=1e-4)
