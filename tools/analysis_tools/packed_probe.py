"""Would packing the members into one network be faster? A probe, for inference.

Usage:
    python tools/analysis_tools/packed_probe.py CONFIG [--members 2] [--batch-sizes 1 8]
        [--repeats 7] [--device cpu] [--amp] [--channels-last]

Packed-Ensembles-style execution runs the S members as *one* network: their
weights stacked (``torch.func.stack_module_state``) and the member network
mapped over them with ``torch.func.vmap``, which turns every convolution of S
members into one grouped convolution (the image, shared by the members, into
one convolution with S x the output channels), so that S members launch the
kernels of one. This tool times, side by side in one process and interleaved,
the members' networks (backbone, neck, head convolutions) one after another
against packed, in eval mode, after checking that both give the same outputs;
it prints the medians and their ratio. It is a probe, not an executor:
``member_execution`` has no packed choice, since on the 2-core CPU packed
measured slower (docs/speed.md), and training is not covered (batch-norm layers
update their running statistics in place, which ``vmap`` refuses).

Packing needs members of one architecture (not ``member_scales``); a model whose
members differ is refused with one line.
"""
from __future__ import annotations

import copy
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from torch import nn  # noqa: E402
from torch.func import functional_call, stack_module_state, vmap  # noqa: E402

import divdet  # noqa: E402,F401
from divdet.apis.cli import ArgumentParser, integer  # noqa: E402
from divdet.apis.complexity import default_input_shape  # noqa: E402
from divdet.apis.runner import read_config, run_main  # noqa: E402
from divdet.utils.errors import ConfigError  # noqa: E402


class MemberNetwork(nn.Module):
    """Member ``i``'s backbone, neck (if any) and head convolutions as one module."""

    def __init__(self, model, i: int) -> None:
        super().__init__()
        self.backbone = model.backbone.members[i]
        self.neck = model.neck.members[i] if getattr(model, 'neck', None) is not None else None
        self.head = model.bbox_head.head_of(i)

    def forward(self, x):
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.head(feats)


def flat(outs) -> list:
    """The tensors in nested tuples and lists, in order."""
    if isinstance(outs, torch.Tensor):
        return [outs]
    return [t for o in outs for t in flat(o)]


class Packed:
    """The members' networks as one: stacked weights, one network mapped over them."""

    def __init__(self, networks: list) -> None:
        shapes = [[(k, tuple(v.shape)) for k, v in n.state_dict().items()] for n in networks]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ConfigError('packed_probe: the members differ in architecture (e.g. '
                              'member_scales); packing needs S members of one shape')
        self.params, self.buffers = stack_module_state(networks)
        self.base = copy.deepcopy(networks[0]).to('meta')

        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x, ))
        self.call = vmap(one, in_dims=(0, 0, None))

    def __call__(self, x):
        return self.call(self.params, self.buffers, x)


def main() -> None:
    parser = ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--members', type=integer(2), default=2, help='S (default 2)')
    parser.add_argument('--batch-sizes', type=integer(1), nargs='+', default=[1, 8])
    parser.add_argument('--repeats', type=integer(1), default=7)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true', help='fp16 autocast (CUDA)')
    parser.add_argument('--channels-last', action='store_true',
                        help='weights and inputs channels-last')
    args = parser.parse_args()
    if str(args.device).startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'--device {args.device}: no CUDA device is available on this machine')
    cfg = read_config(args.config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmdet.registry import MODELS
    model_cfg = cfg.model.copy()
    if 'bbox_head' not in model_cfg:
        raise ConfigError(f'packed_probe: expected a divided detector config (a model with '
                          f'a bbox_head), found {model_cfg.get("type")} in {args.config}')
    model_cfg.num_members = args.members
    model_cfg.channels_last = args.channels_last
    model = MODELS.build(model_cfg)
    model.init_weights()
    model = model.to(args.device).eval()
    networks = [MemberNetwork(model, i) for i in range(args.members)]
    packed = Packed(networks)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    h, w = default_input_shape(cfg, args.config)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    print(f'packed_probe: {args.config}, S={args.members}, {args.device}'
          f'{", AMP" if args.amp else ""}{", channels-last" if args.channels_last else ""}, '
          f'inputs {h}x{w}, medians of {args.repeats} (ms)')
    print(f'{"batch":>5} {"sequential":>11} {"packed":>9} {"packed/seq":>11} {"max |diff|":>11}')
    for b in args.batch_sizes:
        x = torch.randn(b, 3, h, w, device=device).contiguous(memory_format=fmt)
        with torch.inference_mode(), torch.autocast(device.type, enabled=args.amp):
            ref = [flat(n(x)) for n in networks]
            got = flat(packed(x))
            diff = max((g[i].float() - r.float()).abs().max().item()
                       for i, outs in enumerate(ref) for g, r in zip(got, outs))
            scale = max(r.float().abs().max().item() for outs in ref for r in outs)
            if diff > (2e-2 if args.amp else 1e-3) * max(scale, 1.0):
                raise SystemExit(f'packed_probe: packed outputs differ from the members\' by '
                                 f'{diff:.3g} (largest output {scale:.3g}) at batch {b}')
            times = {'seq': [], 'packed': []}
            calls = {'seq': lambda x=x: [n(x) for n in networks], 'packed': lambda x=x: packed(x)}
            for name in calls:  # warm-up
                calls[name]()
            for _ in range(args.repeats):
                for name, call in calls.items():
                    sync()
                    start = time.perf_counter()
                    call()
                    sync()
                    times[name].append(time.perf_counter() - start)
        seq, pk = (statistics.median(times[k]) * 1000 for k in ('seq', 'packed'))
        print(f'{b:>5} {seq:>9.1f}ms {pk:>7.1f}ms {pk / seq:>10.2f}x {diff:>11.2e}')


if __name__ == '__main__':
    run_main(main)
