"""Side-by-side speed of a divided detector: S=1 vs S=2, and WBF in torch vs ensemble-boxes.

Usage:
    python tools/analysis_tools/benchmark.py CONFIG [--repeats 7] [--batch-sizes 1 8]
        [--train-batch 8] [--executions seq threads streams] [--wbf-images 1 32]
        [--wbf-classes 80] [--device cpu] [--amp] [--layouts auto nchw channels-last]
        [--load busy|random] [--compile [MODE]] [--forward-only]
        [--allocator tuned|default|jemalloc|tcmalloc] [--skip-models | --skip-wbf]

Everything is measured in one run, variants interleaved round-robin so that
machine noise hits them alike, each variant in its own process (so that one
variant's threads cannot slow another); medians and ratios to S=1 are printed:

- inference latency (network forward and the head's decoding, NMS and fusion,
  ``model.predict``) at each batch size, for S=1 and for S=2 with each
  ``member_execution``: ``seq`` (one member after another), ``threads`` (members
  concurrently, one thread each), on a GPU ``streams`` (each member's kernels on
  a CUDA stream of its own), and ``auto`` (the default, which times the
  executors that apply in the warm-up calls and keeps the fastest);
- the post-processing alone (decoding, score filter, NMS of every member and
  image, from the same head outputs): divdet's batched route, and mmdet's
  per-image ``predict_by_feat`` per member next to it;
- operators dispatched per inference (``torch.profiler``, top-level ``aten::``
  calls), in all and in the post-processing: a device-independent proxy for the
  kernel launches a GPU would see;
- one training step (forward, loss, backward, SGD step) at ``--train-batch``;
- ``--load``: ``busy`` (default) scales each head's classification convs (x1,
  2, 4, ... until every member keeps at least 100 boxes per image after NMS, as
  a trained detector does; near-uniform scores of untrained heads can fall
  below ``score_thr`` and would understate decoding, NMS and fusion; a sigmoid
  head's classifier bias, its prior's -4.6, is set to zero first);
  ``random`` keeps the initial weights; the factor and the boxes per member and
  image are printed;
- ``--layouts``: the memory formats to build every variant in: ``auto``
  (default: the model's ``channels_last='auto'``, channels-last on the CPU),
  ``nchw`` and/or ``channels-last``; variants are named with a suffix for
  layouts after the first, and every ratio is to S=1 in the first layout given
  (each variant is a process holding its training memory, several GB at batch
  8: more than four variants may not fit in memory);
- ``--mmdet-loss``: also ``S=1 mmdet-loss``, S=1 with mmdet's per-image SSD
  loss (``batched_loss=False``): the stock ``SingleStageDetector``'s training step
  (SSD configs: RetinaNet, FCOS and ATSS members compute mmdet's loss already);
- ``--compile [MODE]``: also ``S=1 inductor`` and ``S=2 inductor``, the members'
  networks compiled by ``torch.compile`` (``compile_members=True``, or
  ``dict(mode=MODE)`` for another mode: ``reduce-overhead`` captures each
  member's kernels in CUDA graphs, variants ``S=1 graphs`` and ``S=2 graphs``;
  S=2 runs its members one after another, torch.compile not being
  thread-safe); each compiles in the warm-up round before its timings;
- with ``--amp`` inference runs under fp16 autocast and training with
  AmpOptimWrapper; ``--forward-only`` times the network without decoding/NMS/fusion;
- WBF time per image, ensemble-boxes (numpy, image by image) against divdet's
  WBF fusing ``--wbf-images`` images per call (1 and 32 by default; on the CPU it
  runs in C, ``DIVDET_WBF_KERNEL=torch`` times the torch path), for 2 and 4 members x 200
  boxes per image, after checking that both give the same boxes, scores and
  labels.

Variant processes run with ``--allocator``: ``tuned`` (default: glibc with its
large allocations kept in the heap, :data:`~divdet.utils.allocator.GLIBC_MALLOC`,
as the tools run), ``default`` (glibc's defaults; also ``--default-malloc``),
``jemalloc`` or ``tcmalloc`` (preloaded; the library must be installed).
"""
from __future__ import annotations

import os
import os.path as osp
import statistics
import sys
import time
import warnings

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import divdet  # noqa: E402,F401
from divdet.apis.cli import ArgumentParser, integer  # noqa: E402
from divdet.apis.complexity import count_ops  # noqa: E402
from divdet.apis.runner import read_config, run_main  # noqa: E402
from divdet.utils.allocator import ALLOCATORS, allocator_env  # noqa: E402
from divdet.utils.errors import ConfigError  # noqa: E402


def _samples(batch: int, size: int, num_classes: int, device: str):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(0)
    out = []
    for _ in range(batch):
        xy = rng.uniform(0, size * 0.6, size=(3, 2))
        wh = rng.uniform(size * 0.1, size * 0.4, size=(3, 2))
        boxes = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             scale_factor=(1.0, 1.0), pad_shape=(size, size)))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.tensor(rng.integers(0, num_classes, 3)))
        out.append(sample.to(device))
    return out


#: ``--load busy``: the factors tried on each head's classification convs' weights,
#: smallest first, until every member keeps :data:`BUSY_BOXES` boxes per image.
BUSY_SCALES = (1.0, 2.0, 4.0, 8.0, 16.0)
BUSY_BOXES = 100

#: ``--layouts`` names -> the model's ``channels_last``.
LAYOUTS = {'auto': 'auto', 'nchw': False, 'channels-last': True}
SUFFIXES = {'auto': 'auto', 'nchw': 'nchw', 'channels-last': 'cl'}  # in variant names
#: ``--compile`` modes (torch.compile's) -> the variants' names.
COMPILE_NAMES = {'default': 'inductor', 'reduce-overhead': 'graphs',
                 'max-autotune': 'autotune', 'max-autotune-no-cudagraphs': 'autotune-nograph'}


def _build(cfg: Config, num_members: int, execution: str, channels_last, compiled,
           device: str, mmdet_loss: bool = False):
    from mmdet.registry import MODELS
    model_cfg = cfg.model.copy()
    if mmdet_loss:  # mmdet's per-image SSD loss, as the stock SingleStageDetector computes it
        model_cfg.bbox_head = dict(model_cfg.bbox_head, batched_loss=False)
    model_cfg.num_members = num_members
    model_cfg.member_execution = execution
    model_cfg.channels_last = channels_last
    model_cfg.compile_members = compiled
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model.to(device)


def _classifiers(head) -> list:
    """The head's class-score convolutions: named ``*cls*`` with A x cls_out_channels
    outputs (SSD's ``cls_convs``, RetinaNet's ``retina_cls``, FCOS's ``conv_cls``, ...)."""
    priors = head.num_base_priors  # SSD: one count per level
    channels = {a * head.cls_out_channels for a in (priors if isinstance(priors, (list, tuple))
                                                     else [priors])}
    return [m for name, m in head.named_modules()
            if isinstance(m, torch.nn.Conv2d) and m.out_channels in channels and 'cls' in name]


def _scale_cls_convs(model, factor: float) -> None:
    """Scale the class-score convolutions' weights by ``factor``; a sigmoid head's
    classifier bias (the prior's -4.6: every score near 0.01) is set to zero first."""
    with torch.no_grad():
        for head in model.bbox_head.members:
            for conv in _classifiers(head):
                if getattr(head, 'use_sigmoid_cls', False) and conv.bias is not None:
                    conv.bias.zero_()
                conv.weight.mul_(factor)


def _make_busy(model, inputs, samples) -> tuple[float, float]:
    """Scale the heads' classification convs until every member keeps BUSY_BOXES boxes
    per image after NMS (or the largest factor); returns (factor, mean boxes)."""
    done = 1.0
    for factor in BUSY_SCALES:
        _scale_cls_convs(model, factor / done)
        done = factor
        boxes = _boxes(model, inputs, samples)
        if min(boxes) >= BUSY_BOXES:
            break
    return done, statistics.mean(boxes)


def _boxes(model, inputs, samples) -> list[int]:
    with torch.inference_mode():
        outs = model(inputs, mode='tensor')
        return [len(r) for member in model.bbox_head.predict_members(outs, samples)
                for r in member]


# The variants' processes get --allocator through their environment; 'tuned' is the
# setting the tools use (divdet.utils.allocator): with glibc's defaults each step
# page-faults its large activations in again, an effect that falls mostly on the
# largest tensors and would decide the comparison.


def _timed(fn, device: str) -> float:
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter() - start


class _Variant:
    """One model variant in its own process, timed on request.

    Each variant lives in a separate (spawned) process, so that one variant's
    thread pools and OpenMP teams cannot change another's speed (member threads
    slowed what ran after them in the same process on the 2-core CPU). Only one
    process computes at a time: the parent asks them in turn.
    """

    def __init__(self, ctx, args, variant: tuple) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, args, variant), daemon=True)
        self.process.start()
        child.close()

    def ready(self):
        reply = self.conn.recv()
        if isinstance(reply, str):
            sys.exit(f'benchmark variant failed:\n{reply}')
        return reply

    def time(self, what: str, batch: int):
        self.conn.send((what, batch))
        reply = self.conn.recv()
        if isinstance(reply, str):
            sys.exit(f'benchmark variant failed:\n{reply}')
        return reply

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(30)


def _serve(conn, args, variant: tuple) -> None:
    """The loop of a variant's process: build the model (``variant``: S,
    member_execution, channels_last, compile_members), then time what is asked."""
    import traceback
    try:
        warnings.simplefilter('ignore')
        MMLogger.get_instance('divdet-benchmark', log_level='WARNING')
        cfg = Config.fromfile(args.config)
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        torch.manual_seed(0)
        model = _build(cfg, *variant[:4], args.device, *variant[4:])
        size = cfg.get('input_size', 300)
        num_classes = cfg.model.bbox_head.head.num_classes
        images = {b: (torch.rand(b, 3, size, size, device=args.device) * 255).to(torch.uint8)
                  for b in args.batch_sizes + args.train_batch}
        samples = {b: _samples(b, size, num_classes, args.device) for b in images}
        # inference takes normalised inputs, as the data preprocessor gives them
        inputs = {b: model.data_preprocessor(dict(inputs=list(x), data_samples=samples[b]))
                  ['inputs'] for b, x in images.items()}
        if args.amp:
            from mmengine.optim import AmpOptimWrapper
            wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=1e-4,
                                                                momentum=0.9), loss_scale='dynamic')
        else:
            wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
        device_type = args.device.split(':')[0]
        model.eval()
        b0 = args.batch_sizes[0]
        load = ((1.0, statistics.mean(_boxes(model, inputs[b0], samples[b0])))
                if args.load == 'random' else _make_busy(model, inputs[b0], samples[b0]))
        with torch.inference_mode():  # the head outputs the post-processing jobs start from
            head_outs = {b: model(inputs[b], mode='tensor') for b in args.batch_sizes}
        conn.send(load)  # ready: (cls conv factor, boxes per member and image after NMS)
    except Exception:
        conn.send(traceback.format_exc())
        return

    def post(b, batched=True):
        head = model.bbox_head
        with torch.inference_mode():
            if batched:
                head.predict_members(head_outs[b], samples[b])
            else:
                [head.predict_member(i, o, samples[b]) for i, o in enumerate(head_outs[b])]

    def infer(b):
        model.eval()
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.float16,
                                                    enabled=args.amp):
            if args.forward_only:
                model(inputs[b], mode='tensor')
            else:
                model(inputs[b], samples[b], mode='predict')

    def train(b):
        model.train()
        data = dict(inputs=list(images[b]), data_samples=samples[b])
        model.train_step(data, wrapper)

    while True:
        request = conn.recv()
        if request is None:
            return
        what, b = request
        try:
            if what.startswith('warm:'):  # warm-up; 'auto' measures its executors here
                step = dict(infer=infer, train=train, post=post,
                            post_mmdet=lambda b: post(b, batched=False))[what[5:]]
                seconds = _timed(lambda step=step, b=b: step(b), args.device)
                for _ in range(16):
                    if not model.runtime.auto.measuring():
                        break
                    step(b)
                conn.send(seconds)
                continue
            if what == 'ops':
                conn.send(count_ops(lambda b=b: infer(b)))
                continue
            step = dict(infer=infer, train=train, post=post,
                        post_mmdet=lambda b: post(b, batched=False))[what]
            conn.send(_timed(lambda step=step, b=b: step(b), args.device))
        except Exception:
            conn.send(traceback.format_exc())
            return


def bench_models(cfg: Config, args) -> None:
    import multiprocessing
    size = cfg.get('input_size', 300)
    try:  # read by glibc (or the loader) when each variant's process starts
        env = allocator_env('default' if args.default_malloc else args.allocator)
    except ValueError as e:
        sys.exit(f'benchmark: {e}')
    for key, value in env.items():
        os.environ.setdefault(key, value)
    executions = {'seq': 'sequential', 'threads': 'threads', 'streams': 'streams',
                  'auto': 'auto'}
    variants = {}  # name -> (S, member_execution, channels_last, compile_members[, mmdet loss])
    for k, layout in enumerate(args.layouts):
        channels_last = LAYOUTS[layout]
        suffix = f' {SUFFIXES[layout]}' if k else ''
        variants[f'S=1{suffix}'] = (1, 'sequential', channels_last, False)
        if args.mmdet_loss:
            variants[f'S=1 mmdet-loss{suffix}'] = (1, 'sequential', channels_last, False, True)
        for short in args.executions:
            variants[f'S=2 {short}{suffix}'] = (2, executions[short], channels_last, False)
        if args.compile:  # compiled members run one after another (not thread-safe)
            mode = args.compile
            compiled = True if mode == 'default' else dict(mode=mode)
            short = COMPILE_NAMES.get(mode, mode)
            variants[f'S=1 {short}{suffix}'] = (1, 'sequential', channels_last, compiled)
            variants[f'S=2 {short}{suffix}'] = (2, 'sequential', channels_last, compiled)
    base = next(iter(variants))
    ctx = multiprocessing.get_context('spawn')
    procs = {name: _Variant(ctx, args, variant) for name, variant in variants.items()}
    boxes = {name: proc.ready() for name, proc in procs.items()}
    results, ops = {}, {}
    what = 'forward' if args.forward_only else 'inference'
    try:
        jobs = [(f'{what}, batch {b}', 'infer', b) for b in args.batch_sizes]
        if not args.forward_only:
            jobs += [(f'post-processing, batch {b}', 'post', b) for b in args.batch_sizes]
            jobs += [(f'  mmdet per image, batch {b}', 'post_mmdet', b)
                     for b in args.batch_sizes]
            ops = {b: {name: proc.time('ops', b) for name, proc in procs.items()}
                   for b in args.batch_sizes}
        jobs += [(f'training step, batch {b}', 'train', b) for b in args.train_batch]
        for label, kind, b in jobs:
            for proc in procs.values():  # warm-up ('auto' chooses its executor here)
                proc.time(f'warm:{kind}', b)
            times = {name: [] for name in procs}
            for _ in range(args.repeats):  # round-robin, one process at a time
                for name, proc in procs.items():
                    times[name].append(proc.time(kind, b))
            results[label] = times
    finally:
        for proc in procs.values():
            proc.close()
    layout = ' and '.join(args.layouts) + (', AMP fp16' if args.amp else '')
    print(f'\n{args.config} at {size}x{size} on {args.device} ({layout}), '
          f'{torch.get_num_threads()} threads, one process per variant, median of {args.repeats}')
    name = 'default' if args.default_malloc else args.allocator
    print(f'allocator: {name}' + (' (' + ', '.join(f'{k}={os.environ[k]}' for k in env) + ')'
                                  if env else " (glibc's defaults)"))
    print(f'load: {args.load} weights (head classification convs x factor); boxes per '
          'member and image after NMS: ' +
          ', '.join(f'{n} {b:.0f} (x{f:g})' for n, (f, b) in boxes.items()))
    others = [n for n in procs if n != base]
    print(f"{'what':<26}" + ''.join(f'{n:>15}' for n in procs) +
          ''.join(f'{n.removeprefix("S=2 ") + " / " + base:>20}' for n in others))
    for label, times in results.items():
        med = {n: statistics.median(t) * 1000 for n, t in times.items()}
        print(f'{label:<26}' + ''.join(f'{med[n]:>13.1f}ms' for n in procs) +
              ''.join(f'{med[n] / med[base]:>19.2f}x' for n in others))
    for b, counts in ops.items():
        for k, part in enumerate(('ops per inference', '  of them post-processing')):
            label = f'{part}, batch {b}'
            print(f'{label:<26}' + ''.join(f'{counts[n][k]:>15d}' for n in procs) +
                  ''.join(f'{counts[n][k] / max(counts[base][k], 1):>19.2f}x' for n in others))


def bench_ops(cfg: Config, args) -> None:
    """Operators per training step and per ``predict``, by part, for S=1 and S=2
    (members one after another), and the median time of each call."""
    from divdet.apis.complexity import (
        FUSION_RANGE,
        LOSS_RANGE,
        POST_PROCESS_RANGE,
        count_ops_by_range,
    )
    size = cfg.get('input_size', 300)
    num_classes = cfg.model.bbox_head.head.num_classes
    rows = []
    for num_members in (1, 2):
        torch.manual_seed(0)
        model = _build(cfg, num_members, 'sequential', 'auto', False, args.device)
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
        for b in args.batch_sizes:
            images = (torch.rand(b, 3, size, size, device=args.device) * 255).to(torch.uint8)
            samples = _samples(b, size, num_classes, args.device)
            data = dict(inputs=list(images), data_samples=samples)
            inputs = model.data_preprocessor(dict(inputs=list(images), data_samples=samples))
            model.eval()
            if args.load == 'busy':
                _make_busy(model, inputs['inputs'], samples)

            def train(model=model, data=data, wrapper=wrapper):
                model.train()
                model.train_step(data, wrapper)

            def predict(model=model, inputs=inputs['inputs'], samples=samples):
                model.eval()
                with torch.inference_mode():
                    model(inputs, samples, mode='predict')

            for what, fn in (('training step', train), ('predict', predict)):
                fn()  # warm-up
                counts = count_ops_by_range(fn)
                times = [_timed(fn, args.device) for _ in range(args.repeats)]
                rows.append((what, num_members, b, counts, statistics.median(times) * 1000))
    print(f'\n{args.config} at {size}x{size}: top-level operators dispatched per call '
          f'(torch.profiler; members one after another), median time of {args.repeats} on '
          f'{args.device}')
    print(f"{'call':<15}{'S':>3}{'batch':>7}{'all':>9}{'network':>10}{'loss':>8}"
          f"{'post-proc':>11}{'fusion':>8}{'time':>11}")
    for what, num_members, b, c, ms in rows:
        network = c['total'] - c[LOSS_RANGE] - c[POST_PROCESS_RANGE] - c[FUSION_RANGE]
        print(f'{what:<15}{num_members:>3}{b:>7}{c["total"]:>9}{network:>10}{c[LOSS_RANGE]:>8}'
              f'{c[POST_PROCESS_RANGE]:>11}{c[FUSION_RANGE]:>8}{ms:>9.1f}ms')
    print('(network: forward, backward and the SGD step outside the loss and post-processing)')


def _wbf_case(rng, num_members: int, boxes: int, num_classes: int = 80):
    out = []
    for _ in range(num_members):
        xy = rng.uniform(0, 0.8, size=(boxes, 2))
        wh = rng.uniform(0.02, 0.3, size=(boxes, 2))
        out.append((np.clip(np.concatenate([xy, xy + wh], 1), 0, 1),
                    rng.uniform(0.05, 1, size=boxes), rng.integers(0, num_classes, size=boxes)))
    return out


def bench_wbf(args) -> None:
    print(f'\nWBF per image (200 boxes per member, {args.wbf_classes} classes; divdet fuses '
          f'a batch of images in one call), median of {args.repeats}')
    print(f"{'images':<8}{'members':<9}{'ensemble-boxes':>16}{'divdet':>12}{'speed-up':>10}"
          f"{'max |diff|':>12}")
    for num_images in args.wbf_images:
        for num_members in (2, 4):
            _bench_wbf_case(args, num_images, num_members)


def _bench_wbf_case(args, num_images: int, num_members: int) -> None:
    from ensemble_boxes import weighted_boxes_fusion as eb_wbf

    from divdet.fusion.wbf import batched_weighted_boxes_fusion as divdet_wbf
    kwargs = dict(iou_thr=0.5, skip_box_thr=1e-4, conf_type='avg')
    rng = np.random.default_rng(num_members)
    cases = [_wbf_case(rng, num_members, 200, args.wbf_classes) for _ in range(num_images)]
    tensors = [[[torch.as_tensor(x, device=args.device) for x in m] for m in case]
               for case in cases]
    boxes = [[m[0] for m in c] for c in tensors]
    scores = [[m[1] for m in c] for c in tensors]
    labels = [[m[2] for m in c] for c in tensors]

    def run_eb():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return [eb_wbf([m[0] for m in c], [m[1] for m in c], [m[2] for m in c], **kwargs)
                    for c in cases]

    def run_divdet():
        return divdet_wbf(boxes, scores, labels, **kwargs)

    def run_divdet_host():
        host = divdet_wbf([[b.cpu() for b in x] for x in boxes],
                          [[b.cpu() for b in x] for x in scores],
                          [[b.cpu() for b in x] for x in labels], **kwargs)
        return [tuple(t.to(args.device) for t in r) for r in host]

    ref, got = run_eb(), run_divdet()
    diff = 0.0
    for (rb, rs, rl), (gb, gs, gl) in zip(ref, got):
        if len(rb) != len(gb):
            sys.exit(f'WBF mismatch: {len(rb)} vs {len(gb)} boxes')
        rows_ref = np.lexsort((rb[:, 0], rl, -rs))
        rows_got = np.lexsort((gb[:, 0].cpu().numpy(), gl.cpu().numpy(), -gs.cpu().numpy()))
        diff = max(diff, np.abs(rb[rows_ref] - gb.cpu().numpy()[rows_got]).max(),
                   np.abs(rs[rows_ref] - gs.cpu().numpy()[rows_got]).max())
        if not np.array_equal(rl[rows_ref].astype(int), gl.cpu().numpy()[rows_got]):
            sys.exit('WBF mismatch: labels differ')
    # Short cases are repeated within a sample so that each lasts a few ms.
    inner = max(1, 32 // num_images)
    t_eb, t_dd, t_host = [], [], []
    for _ in range(args.repeats):
        t_eb.append(_timed(run_eb, 'cpu') / num_images)
        t_dd.append(_timed(lambda: [run_divdet() for _ in range(inner)], args.device)
                    / (num_images * inner))
        if args.device != 'cpu':
            t_host.append(_timed(lambda: [run_divdet_host() for _ in range(inner)],
                                 args.device) / (num_images * inner))
    m_eb, m_dd = statistics.median(t_eb) * 1000, statistics.median(t_dd) * 1000
    print(f'{num_images:<8}{num_members:<9}{m_eb:>14.2f}ms{m_dd:>10.3f}ms{m_eb / m_dd:>9.1f}x'
          f'{diff:>12.1e}')
    if t_host:
        m_host = statistics.median(t_host) * 1000
        print(f"{'':<8}{'  host':<9}{'':>16}{m_host:>10.3f}ms{m_eb / m_host:>9.1f}x"
              f"  (divdet on the host, from and back to {args.device})")


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--repeats', type=integer(1), default=7)
    parser.add_argument('--batch-sizes', type=integer(1), nargs='+', default=[1, 8])
    parser.add_argument('--train-batch', type=integer(1), nargs='+', default=[8],
                        help='batch sizes of the timed training steps')
    parser.add_argument('--mmdet-loss', action='store_true',
                        help="also S=1 with mmdet's per-image SSD loss (the stock detector's; "
                        'batched_loss=False)')
    parser.add_argument('--ops', action='store_true',
                        help='only count the operators dispatched per training step and per '
                        'predict (network, loss, post-processing, fusion) for S=1 and S=2 at '
                        '--batch-sizes, with their times on --device')
    parser.add_argument('--wbf-images', type=integer(1), nargs='+', default=[1, 32],
                        help='images per WBF call (a batch is fused in one call)')
    parser.add_argument('--wbf-classes', type=integer(1), default=80,
                        help='labels drawn for the WBF boxes (few labels: long clustering)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--executions', nargs='+', default=['seq', 'threads', 'auto'],
                        choices=['seq', 'threads', 'streams', 'auto'],
                        help='S=2 variants to measure next to S=1')
    parser.add_argument('--default-malloc', action='store_true',
                        help="glibc's defaults (the same as --allocator default)")
    parser.add_argument('--allocator', default='tuned', choices=sorted(ALLOCATORS),
                        help="the variants' malloc: tuned (glibc as the tools set it; default), "
                             "default (glibc's defaults), jemalloc or tcmalloc (LD_PRELOAD)")
    parser.add_argument('--skip-models', action='store_true', help='only benchmark WBF')
    parser.add_argument('--skip-wbf', action='store_true', help='only benchmark the models')
    parser.add_argument('--load', default='busy', choices=['busy', 'random'],
                        help='head weights giving 100-200 boxes per member and image (busy) '
                        'or the initial ones (random)')
    parser.add_argument('--layouts', nargs='+', default=['auto'],
                        choices=list(LAYOUTS),
                        help='memory formats to build every variant in (ratios are to S=1 '
                        'in the first)')
    parser.add_argument('--amp', action='store_true',
                        help='fp16 autocast for inference, AmpOptimWrapper for training (CUDA)')
    parser.add_argument('--compile', nargs='?', const='default', default=None,
                        choices=sorted(COMPILE_NAMES),
                        help="also S=1 and S=2 with compiled members (torch.compile's mode, "
                             "default 'default'; 'reduce-overhead': CUDA graphs), compiled "
                             "in the warm-up round")
    parser.add_argument('--forward-only', action='store_true',
                        help='time the network forward instead of model.predict')
    args = parser.parse_args()
    MMLogger.get_instance('divdet-benchmark', log_level='WARNING')  # quiet weight init logs
    if str(args.device).startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'--device {args.device}: no CUDA device is available on this machine')
    cfg = read_config(args.config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    head_type = str(cfg.model.get('bbox_head', {}).get('type', ''))
    if args.mmdet_loss and head_type.split('.')[-1] != 'DividedSSDHead':
        raise ConfigError(f'--mmdet-loss: only DividedSSDHead has a batched loss to compare '
                          f"with mmdet's; {args.config} has {head_type or 'no bbox_head'}, "
                          f"whose members compute mmdet's loss already")
    if args.ops:
        bench_ops(cfg, args)
        return
    if not args.skip_models:
        bench_models(cfg, args)
    if not args.skip_wbf:
        bench_wbf(args)


if __name__ == '__main__':
    run_main(main, malloc=False)  # the allocator is what --allocator chooses
