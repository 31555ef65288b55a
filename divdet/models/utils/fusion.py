"""Fused execution of S members that share an architecture.

Every layer of the ResNet family, SSD's extra layers and SSD's prediction convs
is separable over channels except convolutions, and a convolution of S members
is one grouped convolution whose output channels (and groups) are S times those
of a member. So S members run as one network on channel-stacked tensors::

    member i's channels c  <->  fused channels i * C + c

:class:`FusedMembers` keeps the *members* as the owners of every parameter and
buffer (checkpoints, optimizers and ``init_cfg`` see the same tensors as in the
member-by-member path, so checkpoints are interchangeable). At each call it runs
a parameter-free fused copy of the architecture with
:func:`torch.func.functional_call`, feeding it the members' weights concatenated
along the output-channel dimension (differentiable, so gradients reach every
member); in training, the batch-norm running statistics it updates are copied
back to the members. In eval mode without gradients the concatenated weights are
cached until a member's parameters change.

Differences from the member-by-member path: results agree to float rounding
(grouped vs separate convolutions); stochastic depth (DropPath), where used,
draws one mask per image for all members instead of one per member.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor
from torch.func import functional_call

#: Leaf modules that act on each channel separately (or have no channels).
CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Sigmoid, nn.Hardsigmoid, nn.Hardswish,
               nn.SiLU, nn.GELU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity,
               nn.Dropout)


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def fusable(members: Sequence[nn.Module]) -> str | None:
    """None if the members can be fused, else why not."""
    if len(members) < 2:
        return 'a single member needs no fusion'
    shapes = [[(n, tuple(t.shape)) for n, t in m.state_dict().items()] for m in members]
    if any(s != shapes[0] for s in shapes[1:]):
        return 'members differ in architecture'
    for name, module in members[0].named_modules():
        if not _is_leaf(module) or isinstance(module, (nn.Conv2d, nn.BatchNorm2d) + CHANNELWISE):
            continue
        if type(module).__name__ == 'DropPath':
            continue
        return f'{name or "the member"} is a {type(module).__name__}, which mixes channels'
    return None


def build_fused_template(member: nn.Module, num_members: int) -> nn.Module:
    """A copy of ``member`` with every conv and batch norm widened S times.

    Convolutions get ``in * S`` inputs, ``out * S`` outputs and ``groups * S``
    groups; batch norms ``C * S`` channels. The template's own tensors are
    never used: :class:`FusedMembers` passes the members' tensors in.
    """
    template = copy.deepcopy(member)
    for name, module in list(template.named_modules()):
        if isinstance(module, nn.Conv2d):
            new = nn.Conv2d(module.in_channels * num_members, module.out_channels * num_members,
                            module.kernel_size, module.stride, module.padding, module.dilation,
                            module.groups * num_members, module.bias is not None,
                            module.padding_mode, device='meta')
        elif isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(module.num_features * num_members, module.eps, module.momentum,
                                 module.affine, module.track_running_stats, device='meta')
            new.train(module.training)
        else:
            continue
        parent_name, _, child = name.rpartition('.')
        setattr(template.get_submodule(parent_name) if parent_name else template, child, new)
    return template


class FusedMembers:
    """Runs S identically-built members as one grouped network.

    Not an ``nn.Module`` on purpose: it owns no parameters; the members passed
    in keep them. Call it with channel-stacked inputs (member i's channels at
    ``[i * C, (i + 1) * C)``); outputs are channel-stacked the same way.

    Args:
        members: the S member modules (an ``nn.ModuleList`` of the owner).
    """

    def __init__(self, members: nn.ModuleList) -> None:
        reason = fusable(list(members))
        if reason is not None:
            raise ValueError(f'cannot fuse these members: {reason}')
        self.members = members
        self.num_members = len(members)
        self.template = build_fused_template(members[0], self.num_members)
        # template module <-> member 0's module, same structure and order
        self._module_pairs = list(zip(self.template.modules(), members[0].modules()))
        self._stats = [n for n, _ in members[0].named_buffers() if 'running_' in n]
        self._counters = [n for n, _ in members[0].named_buffers()
                          if n.endswith('num_batches_tracked')]
        self._cache_key = None
        self._cache = None

    def _stacked(self) -> dict[str, Tensor]:
        tensors = {}
        named = [dict(m.named_parameters()) for m in self.members]
        for name in named[0]:
            tensors[name] = torch.cat([p[name] for p in named], 0)
        buffers = [dict(m.named_buffers()) for m in self.members]
        for name in buffers[0]:
            if name in self._counters:
                tensors[name] = buffers[0][name].clone()
            else:
                tensors[name] = torch.cat([b[name] for b in buffers], 0)
        return tensors

    def _tensors(self) -> dict[str, Tensor]:
        if torch.is_grad_enabled() or self.members.training:
            self._cache_key = self._cache = None
            return self._stacked()
        key = tuple((t.data_ptr(), t._version) for m in self.members
                    for t in list(m.parameters()) + list(m.buffers()))
        if key != self._cache_key:
            self._cache_key, self._cache = key, self._stacked()
        return self._cache

    def __call__(self, *args, **kwargs):
        """Run the fused network; training also advances every member's BN statistics."""
        for t_mod, m_mod in self._module_pairs:
            t_mod.training = m_mod.training  # frozen stages / norm_eval stay in eval
        tensors = self._tensors()
        out = functional_call(self.template, tensors, args, kwargs, strict=True)
        if self.members.training:
            with torch.no_grad():
                for name in self._stats:
                    for m, part in zip(self.members,
                                       tensors[name].chunk(self.num_members)):
                        m.get_buffer(name).copy_(part)
                for name in self._counters:
                    for m in self.members:
                        m.get_buffer(name).copy_(tensors[name])
        return out


def stack_members(tensors: Sequence[Tensor]) -> Tensor:
    """S tensors (N, C, ...) -> one (N, S * C, ...)."""
    return torch.cat(list(tensors), 1)


def split_members(tensor: Tensor, num_members: int) -> tuple[Tensor, ...]:
    """(N, S * C, ...) -> S tensors (N, C, ...)."""
    return tensor.chunk(num_members, 1)
