"""The co-training term: zero for agreeing members, positive otherwise, gradients reach all."""
import math

import pytest
import torch

from divdet.models.losses import CoTrainingLoss, jensen_shannon_divergence


def test_zero_for_identical_members():
    z = torch.randn(16, 81)
    loss = CoTrainingLoss(loss_weight=0.5)([z, z.clone(), z.clone()])
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_positive_and_matches_definition():
    torch.manual_seed(0)
    logits = [torch.randn(8, 5) for _ in range(3)]
    p = torch.stack([z.softmax(-1) for z in logits])
    entropy = lambda q: -(q * q.log()).sum(-1)  # noqa: E731
    expected = (entropy(p.mean(0)) - entropy(p).mean(0)).mean()
    loss = CoTrainingLoss(loss_weight=1.0)(logits)
    assert loss.item() > 0
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_bounded_by_log_num_members():
    # Confident, disjoint members: JS approaches log(S).
    logits = [torch.full((1, 4), -50.0).index_fill_(1, torch.tensor([i]), 50.0) for i in range(4)]
    assert jensen_shannon_divergence(logits).item() == pytest.approx(math.log(4), rel=1e-4)


def test_gradient_reaches_every_member():
    logits = [torch.randn(4, 10, requires_grad=True) for _ in range(3)]
    CoTrainingLoss()(logits).backward()
    for z in logits:
        assert z.grad is not None and z.grad.abs().sum() > 0


def test_float32_under_half_inputs_and_weight_buffer():
    logits = [torch.randn(4, 10).half() for _ in range(2)]
    loss_fn = CoTrainingLoss(loss_weight=0.5)
    assert loss_fn(logits).dtype == torch.float32
    loss_fn.weight.fill_(0.0)
    assert loss_fn(logits).item() == 0.0
    assert 'weight' in loss_fn.state_dict()


def test_single_member_and_shape_mismatch():
    assert CoTrainingLoss()([torch.randn(3, 4)]).item() == 0.0
    with pytest.raises(ValueError, match='equal logit shapes'):
        CoTrainingLoss()([torch.randn(3, 4), torch.randn(3, 5)])
