"""Every divisible architecture at every supported S: shapes, finiteness, gradients."""
import pytest
import torch
import torch.nn as nn

from divdet.models import ARCHS, DividedResNet

CASES = [(arch, s) for arch, spec in ARCHS.items() for s in spec.supported]


def _input_size(arch: str) -> int:
    # the deepest ImageNet networks run at 32x32 (1x1 at stride 32) to keep the suite short
    return 32 if arch.endswith('-cifar') or arch.startswith(('efficientnet', 'senet')) else 64


@pytest.mark.parametrize('arch,num_members', CASES, ids=[f'{a}-S{s}' for a, s in CASES])
def test_forward_backward(arch, num_members):
    torch.manual_seed(0)
    model = DividedResNet(arch, num_members=num_members)
    model.init_weights()
    model.train()
    size = _input_size(arch)
    outs = model(torch.randn(2, 3, size, size))
    assert isinstance(outs, tuple) and len(outs) == num_members
    stride = 4 if arch.endswith('-cifar') else 32
    for member_outs in outs:
        assert len(member_outs) == len(model.member_out_channels) == 1
        (feat, ) = member_outs
        assert feat.shape == (2, model.member_out_channels[0], size // stride, size // stride)
        assert torch.isfinite(feat).all()
    sum(o[0].float().square().mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f'parameters without gradient: {missing[:5]}'
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def _params_with_head(model: DividedResNet, num_classes: int) -> list:
    return [sum(p.numel() for p in m.parameters()) + model.member_out_channels[-1] * num_classes
            + num_classes for m in model.members]


@pytest.mark.parametrize('arch,num_members,millions', [
    ('resnet50-d', 1, 25.68), ('resnet50-d', 2, 12.59), ('resnet50-d', 4, 6.95),
    ('resnet101-d', 1, 44.7), ('resnet101-d', 2, 21.6),
    ('resnet200-d', 1, 64.7), ('wide-resnet101-2', 1, 126.9)])
def test_parameter_counts_match_reference(arch, num_members, millions):
    """The paper's table (ResNet-200 and WRN-101-2: their original papers, 64.7 M and
    126.9 M): member parameters with a 1000-class linear head, within 1%."""
    model = DividedResNet(arch, num_members=num_members)
    for count in _params_with_head(model, 1000):
        assert count / 1e6 == pytest.approx(millions, rel=0.01)


@pytest.mark.parametrize('num_members,millions', [(1, 36.5), (2, 35.8), (4, 36.7)])
def test_wrn28_10_cifar100_total_parameters(num_members, millions):
    """The paper: CIFAR-100 WRN-28-10 totals 36.5 M -> 35.8 M (S=2) -> 36.7 M (S=4)."""
    model = DividedResNet('wrn28-10-cifar', num_members=num_members)
    assert sum(_params_with_head(model, 100)) / 1e6 == pytest.approx(millions, rel=0.01)


def test_single_member_is_the_undivided_network():
    from mmpretrain.models.backbones import ResNetV1d
    divided = DividedResNet('resnet50-d', num_members=1)
    plain = ResNetV1d(depth=50, stem_channels=128, base_channels=64)
    shapes = [p.shape for p in plain.parameters()]
    assert [p.shape for p in divided.members[0].parameters()] == shapes
    plain.load_state_dict(divided.members[0].state_dict())
    x = torch.randn(1, 3, 64, 64)
    divided.eval(), plain.eval()
    torch.testing.assert_close(divided(x)[0][0], plain(x)[0])


def test_unsupported_split_lists_supported_ones():
    with pytest.raises(ValueError, match=r'num_members=3.*supported: \[1, 2, 4, 8\]'):
        DividedResNet('resnet50-d', num_members=3)
    with pytest.raises(KeyError, match='unknown arch'):
        DividedResNet('resnet51', num_members=2)


def test_members_start_from_different_initialisations():
    model = DividedResNet('resnet18-d', num_members=2)
    model.init_weights()
    a, b = (m.stem[0].conv.weight for m in model.members)
    assert a.shape == b.shape and not torch.equal(a, b)


def test_ssd_truncation_and_member_prefixed_checkpoint(tmp_path):
    kwargs = dict(num_stages=3, strides=(1, 2, 1), dilations=(1, 1, 1), out_indices=(2, ))
    model = DividedResNet('resnet50-d', num_members=2, **kwargs)
    outs = model(torch.randn(1, 3, 300, 300))
    assert [o[0].shape for o in outs] == [(1, 704, 38, 38)] * 2
    assert model.member_out_channels == (704, )
    path = tmp_path / 'members.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    assert any(k.startswith('members.1.') for k in model.state_dict())
    loaded = DividedResNet('resnet50-d', num_members=2,
                           init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    loaded.init_weights()
    for (k, v), w in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, w), k


def test_member_init_cfg_loads_each_member(tmp_path):
    source = DividedResNet('resnet18-d', num_members=2)
    paths = []
    for i, member in enumerate(source.members):
        paths.append(tmp_path / f'm{i}.pth')
        torch.save({'state_dict': member.state_dict()}, paths[-1])
    model = DividedResNet('resnet18-d', num_members=2, member_init_cfg=[
        dict(type='Pretrained', checkpoint=str(p)) for p in reversed(paths)])
    model.init_weights()
    torch.testing.assert_close(model.members[0].state_dict(), source.members[1].state_dict())
    torch.testing.assert_close(model.members[1].state_dict(), source.members[0].state_dict())


def test_dropout_scales_with_members():
    model = DividedResNet('wrn16-8-cifar', num_members=4, drop_rate=0.4)
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(rates) == 4 * 2 * 3 and rates == pytest.approx([0.1] * len(rates))
    sqrt = DividedResNet('wrn16-8-cifar', num_members=4, drop_rate=0.4, dropout_scaling='sqrt')
    rates = [m.p for m in sqrt.modules() if isinstance(m, nn.Dropout)]
    assert rates == pytest.approx([0.2] * len(rates))
    with pytest.raises(ValueError, match='has no drop_rate'):
        DividedResNet('resnet50-d', num_members=2, drop_rate=0.1)


def test_frozen_stages_and_norm_eval():
    model = DividedResNet('resnet50-d', num_members=2, frozen_stages=1, norm_eval=True)
    model.train()
    for member in model.members:
        assert not any(p.requires_grad for p in member.layer1.parameters())
        assert all(p.requires_grad for p in member.layer2.parameters())
        assert not any(m.training for m in member.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize('arch,num_classes,millions', [
    ('pyramidnet272-cifar', 100, 26.0), ('shake-shake26-2x96d-cifar', 10, 26.2),
    ('densenet-bc190-k40-cifar', 100, 25.6), ('efficientnet-b0', 1000, 5.3),
    ('senet154', 1000, 115.1)])
def test_other_families_match_their_papers(arch, num_classes, millions):
    """S=1 against the original papers (PyramidNet, Shake-Shake, DenseNet-BC,
    EfficientNet, SENet), with a linear head, within 2%."""
    (count, ) = _params_with_head(DividedResNet(arch, num_members=1), num_classes)
    assert count / 1e6 == pytest.approx(millions, rel=0.02)


NEW_FAMILIES = ['seresnet110-cifar', 'seresnet164-cifar', 'pyramidnet164-cifar',
                'pyramidnet272-cifar', 'shake-shake26-2x96d-cifar', 'densenet-bc190-k40-cifar',
                'senet154', 'efficientnet-b0', 'efficientnet-b7']
#: (arch, S) whose reference rule puts the total outside 10% of S=1 (docs/method.md
#: lists the totals): PyramidNet keeps its 16-channel start, SENet-154 its outer
#: widths and 3x3 shortcuts, small ImageNet networks pay S classifier heads, and
#: Shake-Shake's hand widths undershoot at S=2 and 8.
OUTSIDE_10_PERCENT = {
    ('seresnet110-cifar', 2), ('seresnet164-cifar', 2),
    ('pyramidnet164-cifar', 4), ('pyramidnet164-cifar', 8),
    ('pyramidnet272-cifar', 4), ('pyramidnet272-cifar', 8),
    ('shake-shake26-2x96d-cifar', 2), ('shake-shake26-2x96d-cifar', 8),
    ('senet154', 2), ('senet154', 4), ('senet154', 8),
    ('efficientnet-b0', 2), ('efficientnet-b0', 4),
}


@pytest.mark.parametrize('arch', NEW_FAMILIES)
def test_divided_totals_against_the_undivided_network(arch):
    """S > 1 members together have within 10% of the S=1 parameters (classifier
    head included), except where the reference's own rule does not give that."""
    classes = 10 if arch.startswith('shake') else 100 if arch.endswith('-cifar') else 1000

    def total(s):
        return sum(_params_with_head(DividedResNet(arch, num_members=s), classes))
    one = total(1)
    for s in ARCHS[arch].supported[1:]:
        within = total(s) == pytest.approx(one, rel=0.10)
        assert within != ((arch, s) in OUTSIDE_10_PERCENT), f'S={s}: {total(s) / one:.3f}'
