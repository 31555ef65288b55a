"""tools/analysis_tools/benchmark.py runs every variant and prints medians and ratios."""
import re

import pytest
import torch


def _ratios_match(ratios, times):
    """The printed ratios are those of the (unrounded) times: equal to the ratios of
    the printed, rounded times up to that rounding (relative, so a 22x ratio under
    load is held to the same digits as a 1.1x one)."""
    return len(ratios) == len(times) - 1 and all(
        r == pytest.approx(t / times[0], rel=0.02, abs=0.006) for r, t in zip(ratios, times[1:]))


def test_benchmark_table(tool):
    out = tool('tools/analysis_tools/benchmark.py',
               'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py', '--repeats', '1',
               '--batch-sizes', '1', '--train-batch', '2', '--wbf-images', '1', '2',
               '--mmdet-loss').stdout
    assert 'one process per variant' in out and 'allocator: tuned (MALLOC_MMAP_THRESHOLD_' in out
    header = next(line for line in out.splitlines() if line.startswith('what'))
    for name in ('S=1', 'S=1 mmdet-loss', 'S=2 seq', 'S=2 threads', 'S=2 auto',
                 'threads / S=1', 'auto / S=1', 'S=1 mmdet-loss / S=1'):
        assert name in header
    for row in ('inference, batch 1', 'training step, batch 2'):
        line = next(line for line in out.splitlines() if line.startswith(row))
        times = [float(t) for t in re.findall(r'([\d.]+)ms', line)]
        ratios = [float(r) for r in re.findall(r'([\d.]+)x', line)]
        assert len(times) == 5 and all(t > 0 for t in times)
        assert _ratios_match(ratios, times)
    # WBF: results are compared with ensemble-boxes before timing (exit 1 if not equal)
    wbf = [line.split() for line in out.splitlines()
           if re.match(r'^\d+\s+[24]\s+[\d.]+ms', line)]
    assert [row[:2] for row in wbf] == [['1', '2'], ['1', '4'], ['2', '2'], ['2', '4']]
    assert all(float(row[-1]) < 1e-5 for row in wbf)


def test_benchmark_layouts(tool):
    out = tool('tools/analysis_tools/benchmark.py',
               'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py', '--repeats', '1',
               '--batch-sizes', '1', '--train-batch', '2', '--executions', 'threads',
               '--layouts', 'nchw', 'channels-last', '--skip-wbf').stdout
    assert '(nchw and channels-last)' in out and 'WBF' not in out
    header = next(line for line in out.splitlines() if line.startswith('what')).split()
    assert header[1:5] == ['S=1', 'S=2', 'threads', 'S=1']  # S=1, S=2 threads, S=1 cl, ...
    assert ' '.join(header).count('/ S=1') == 3  # every ratio is to S=1 in the first layout
    assert 'S=2 threads cl' in ' '.join(header) and 'threads cl / S=1' in ' '.join(header)
    line = next(line for line in out.splitlines() if line.startswith('training step, batch 2'))
    times = [float(t) for t in re.findall(r'([\d.]+)ms', line)]
    ratios = [float(r) for r in re.findall(r'([\d.]+)x', line)]
    assert len(times) == 4 and _ratios_match(ratios, times)


def test_benchmark_compiled_members(tool):
    out = tool('tools/analysis_tools/benchmark.py',
               'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py', '--repeats', '1',
               '--batch-sizes', '1', '--train-batch', '2', '--executions', 'threads',
               '--compile', '--skip-wbf').stdout
    header = ' '.join(next(line for line in out.splitlines() if line.startswith('what')).split())
    assert header.startswith('what S=1 S=2 threads S=1 inductor S=2 inductor')
    for row in ('inference, batch 1', 'training step, batch 2'):
        line = next(line for line in out.splitlines() if line.startswith(row))
        times = [float(t) for t in re.findall(r'([\d.]+)ms', line)]
        ratios = [float(r) for r in re.findall(r'([\d.]+)x', line)]
        assert len(times) == 4 and _ratios_match(ratios, times)


def test_benchmark_operator_counts(tool):
    """--ops: operators per training step and predict by part; the loss does not grow
    with the batch, and S=2's loss is within 1.2x of S=1's."""
    out = tool('tools/analysis_tools/benchmark.py',
               'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py', '--ops',
               '--batch-sizes', '2', '4', '--repeats', '1').stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r'^(training step|predict)\s+(\d)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+'
                     r'(\d+)\s+(\d+)\s+([\d.]+)ms$', line)
        if m:
            what, s, b, total, network, loss, post, fusion = m.groups()[:8]
            rows[what, int(s), int(b)] = dict(total=int(total), network=int(network),
                                              loss=int(loss), post=int(post), fusion=int(fusion))
    assert len(rows) == 8, out
    for s in (1, 2):
        train2, train4 = rows['training step', s, 2], rows['training step', s, 4]
        assert train2['network'] > 100
        assert train2['loss'] > 50 and train4['loss'] == train2['loss']
        assert rows['predict', s, 2]['post'] > 50 and rows['training step', s, 2]['post'] == 0
    assert rows['training step', 2, 4]['loss'] <= 1.2 * rows['training step', 1, 4]['loss']
    assert rows['predict', 2, 2]['fusion'] > 0 and rows['predict', 1, 2]['fusion'] == 0


def test_benchmark_compile_modes(tool):
    """--compile takes torch.compile's mode (reduce-overhead: CUDA graphs); others are
    refused with one line."""
    proc = tool('tools/analysis_tools/benchmark.py',
                'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py',
                '--compile', 'fast', check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if 'divdet: error' in line]
    assert lines == [
        "divdet: error: benchmark.py: argument --compile: invalid choice: 'fast' (choose from "
        "'default', 'max-autotune', 'max-autotune-no-cudagraphs', 'reduce-overhead') "
        '(see benchmark.py --help)']


def test_busy_load_finds_every_heads_classifier_and_refuses_mmdet_loss_off_ssd(tool):
    """--load busy scales the class-score convolutions of any divided head (SSD's per-level
    cls_convs, RetinaNet's retina_cls); --mmdet-loss is for the SSD head only."""
    import importlib.util

    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from tests.conftest import ROOT
    spec = importlib.util.spec_from_file_location(
        'benchmark', ROOT / 'tools/analysis_tools/benchmark.py')
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    init_default_scope('mmdet')
    demo = ROOT / 'configs/demo'
    for name in ('ssd128_divided-resnet18-d_1xb16-24e_shapes.py',
                 'retinanet128_divided-resnet18-d-fpn_1xb16-24e_hardshapes.py'):
        cfg = Config.fromfile(str(demo / name))
        model = MODELS.build(cfg.model)
        head = model.bbox_head.members[0]
        found = bench._classifiers(head)
        # SSD: one per level (not the box convs, whatever their widths); RetinaNet: one
        count = len(head.cls_convs) if name.startswith('ssd') else 1
        assert len(found) == count and all(f.out_channels % head.cls_out_channels == 0
                                           for f in found), name
        sigmoid = getattr(head, 'use_sigmoid_cls', False)
        before = [c.weight.detach().clone() for c in found]
        bench._scale_cls_convs(model, 2.0)
        for conv, weight in zip(found, before):
            torch.testing.assert_close(conv.weight, weight * 2)
            if sigmoid:
                assert float(conv.bias.abs().max()) == 0.0
    proc = tool('tools/analysis_tools/benchmark.py',
                str(demo / 'retinanet128_divided-resnet18-d-fpn_1xb16-24e_hardshapes.py'),
                '--mmdet-loss', check=False)
    assert proc.returncode == 2
    assert '--mmdet-loss: only DividedSSDHead has a batched loss' in proc.stderr
