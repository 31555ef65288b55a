"""Shake-Shake and ShakeDrop: residual branches scaled by random numbers in training.

- Shake-Shake (Gastaldi, "Shake-Shake regularization", 2017): two branches mixed
  by ``alpha`` per image in the forward pass and ``beta`` in the backward pass,
  both uniform in [0, 1]; 0.5 each at test time.
- ShakeDrop (Yamada et al., "ShakeDrop Regularization for Deep Residual
  Learning", 2018): with probability ``p`` a branch is scaled by ``alpha`` in
  [-1, 1] forward and ``beta`` in [0, 1] backward, else left as it is; at test
  time it is scaled by its expectation ``1 - p``.

The random numbers are drawn on the tensor's device from torch's default
generator, so ``torch.manual_seed`` repeats them on the CPU and on CUDA. The
draws do not branch on their values (no ``.item()``), so tracing and
``torch.compile`` see one graph.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from divdet.utils.errors import ConfigError


def _per_image(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One uniform draw in [low, high) per image, shaped to broadcast over (C, H, W)."""
    shape = (x.shape[0], ) + (1, ) * (x.dim() - 1)
    return torch.empty(shape, dtype=x.dtype, device=x.device).uniform_(low, high)


class _ShakeShakeFn(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        alpha = _per_image(x1, 0.0, 1.0)
        return alpha * x1 + (1 - alpha) * x2

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        beta = _per_image(grad, 0.0, 1.0)
        return beta * grad, (1 - beta) * grad


def shake_shake(x1: torch.Tensor, x2: torch.Tensor, training: bool) -> torch.Tensor:
    """Mix two branches: random per image in training, their mean at test time."""
    if not training:
        return 0.5 * (x1 + x2)
    return _ShakeShakeFn.apply(x1, x2)


class _ShakeDropFn(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: torch.Tensor, p_drop: float) -> torch.Tensor:
        # gate 1: the branch is kept as it is; gate 0: it is shaken.
        gate = torch.empty((), dtype=x.dtype, device=x.device).bernoulli_(1 - p_drop)
        ctx.save_for_backward(gate)
        alpha = _per_image(x, -1.0, 1.0)
        return x * (gate + (1 - gate) * alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (gate, ) = ctx.saved_tensors
        beta = _per_image(grad, 0.0, 1.0)
        return grad * (gate + (1 - gate) * beta), None


class ShakeDrop(nn.Module):
    """ShakeDrop of one residual branch.

    Args:
        p_drop: probability that the branch is shaken in a training step.
    """

    def __init__(self, p_drop: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p_drop <= 1.0:
            raise ConfigError(f'ShakeDrop probability must be in [0, 1], found {p_drop}')
        self.p_drop = p_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The branch, shaken in training, scaled by ``1 - p_drop`` at test time."""
        if self.p_drop == 0:
            return x
        if not self.training:
            return (1 - self.p_drop) * x
        return _ShakeDropFn.apply(x, self.p_drop)

    def extra_repr(self) -> str:
        return f'p_drop={self.p_drop:.4g}'


def linear_shakedrop_probs(final_p: float, num_blocks: int) -> list[float]:
    """ShakeDrop probability of block i, ``final_p * (i + 1) / num_blocks``: linear in
    depth up to ``final_p`` at the last block (the PyramidNet + ShakeDrop recipe)."""
    return [final_p * (i + 1) / num_blocks for i in range(num_blocks)]
