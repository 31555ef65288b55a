"""Shake-Shake and ShakeDrop: random in training, repeatable with a seed, exact at test."""
import pytest
import torch

from divdet.models.backbones import DividedBackbone, ShakeDrop, shake_shake


def _grads(seed: int, fn, *inputs):
    torch.manual_seed(seed)
    leaves = [x.clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    out.backward(torch.ones_like(out))
    return out.detach(), [x.grad for x in leaves]


def test_shake_shake_repeats_with_a_seed_and_mixes_per_image():
    x1, x2 = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    fn = lambda a, b: shake_shake(a, b, training=True)  # noqa: E731
    out_a, grads_a = _grads(0, fn, x1, x2)
    out_b, grads_b = _grads(0, fn, x1, x2)
    assert torch.equal(out_a, out_b) and all(map(torch.equal, grads_a, grads_b))
    out_c, grads_c = _grads(1, fn, x1, x2)
    assert not torch.equal(out_a, out_c) and not torch.equal(grads_a[0], grads_c[0])
    # forward: alpha * x1 + (1 - alpha) * x2 with one alpha per image in [0, 1]
    alpha = ((out_a - x2) / (x1 - x2)).flatten(1)
    assert torch.allclose(alpha, alpha[:, :1].expand_as(alpha), atol=1e-4)
    assert ((alpha >= 0) & (alpha <= 1)).all() and alpha[:, 0].unique().numel() == 4
    # backward: beta and 1 - beta, drawn anew (not the forward's alpha)
    assert torch.allclose(grads_a[0] + grads_a[1], torch.ones_like(x1))
    assert not torch.allclose(grads_a[0].flatten(1)[:, 0], alpha[:, 0])
    torch.testing.assert_close(shake_shake(x1, x2, training=False), (x1 + x2) / 2)


def test_shakedrop_repeats_with_a_seed_and_is_its_expectation_at_test():
    layer = ShakeDrop(p_drop=0.5).train()
    x = torch.randn(8, 3, 2, 2)
    runs = [_grads(s, layer, x) for s in (0, 0)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1][0], runs[1][1][0])
    outs = {tuple(_grads(s, layer, x)[0].flatten().tolist()) for s in range(8)}
    assert len(outs) > 2  # kept or shaken by different draws
    scales = []
    for s in range(40):
        out, (grad, ) = _grads(s, layer, x)
        scale = (out / x).flatten(1)
        assert torch.allclose(scale, scale[:, :1].expand_as(scale), atol=1e-4)
        scales.append(scale[:, 0])
        if torch.allclose(scale, torch.ones_like(scale)):  # kept: gradient passes as it is
            assert torch.equal(grad, torch.ones_like(x))
        else:  # shaken: alpha in [-1, 1] forward, beta in [0, 1] backward
            assert (scale.abs() <= 1).all() and ((grad >= 0) & (grad <= 1)).all()
    assert any((s < 0).any() for s in scales)
    layer.eval()
    torch.testing.assert_close(layer(x), 0.5 * x)
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        ShakeDrop(1.5)


@pytest.mark.parametrize('arch,kwargs', [
    ('shake-shake26-2x96d-cifar', dict(depth=8)),
    ('pyramidnet164-cifar', dict(depth=20)),
    ('densenet-bc190-k40-cifar', dict(shakedrop_prob=0.5, depths=(2, 2, 2)))])
def test_stochastic_members_repeat_with_a_seed(arch, kwargs):
    torch.manual_seed(0)
    model = DividedBackbone(arch, num_members=2, **kwargs).train()
    x = torch.randn(2, 3, 8, 8)

    def step(seed):
        model.zero_grad()
        torch.manual_seed(seed)
        out = sum(o[0].square().mean() for o in model(x))
        out.backward()
        return out.item(), [p.grad.clone() for p in model.parameters()]

    (a, grads_a), (b, grads_b), (c, _) = step(3), step(3), step(4)
    assert a == b and all(map(torch.equal, grads_a, grads_b))
    assert a != c


def test_shakedrop_probability_scales_with_members():
    def probs(arch, s, **kw):
        model = DividedBackbone(arch, num_members=s, **kw)
        return [m.p_drop for m in model.members[0].modules() if isinstance(m, ShakeDrop)]
    one, four = probs('pyramidnet164-cifar', 1), probs('pyramidnet164-cifar', 4)
    assert len(one) == len(four) == 54
    assert one[-1] == pytest.approx(0.5) and four[-1] == pytest.approx(0.25)
    assert one == pytest.approx([0.5 * (i + 1) / 54 for i in range(54)])
    dense = probs('densenet-bc190-k40-cifar', 4, shakedrop_prob=0.4, depths=(2, 2, 2))
    assert dense[-1] == pytest.approx(0.2) and len(dense) == 6
    assert not probs('densenet-bc190-k40-cifar', 1, depths=(2, 2, 2))
