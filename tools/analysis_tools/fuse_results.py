"""Fuse the detections of several models and evaluate every model and the fusion.

Usage:
    python tools/analysis_tools/fuse_results.py ANN_FILE RESULT [RESULT ...]
        [--fusion WeightedBoxesFusion] [--weights W [W ...]]
        [--fusion-options iou_thr=0.55 conf_type=avg ...] [--classes NAME ...]
        [--out fused.bbox.json] [--metrics-out metrics.json] [--no-eval]
        [--tune-weights] [--tune-weight-values 1 2 3] [--tune-iou-values 0.4 0.5 0.6 0.7]

Each RESULT is a COCO result JSON file (mmdet's ``tools/test.py --cfg-options
test_evaluator.format_only=True test_evaluator.outfile_prefix=...`` output, or any
list of ``{image_id, category_id, bbox: [x, y, w, h], score}``) or a
``tools/test.py --out`` pickle of the images of ANN_FILE. ``--fusion`` is any
fuser registered in mmdet's ``TASK_UTILS`` (``WeightedBoxesFusion``,
``NMSFusion``, ``SoftNMSFusion``, ``ConcatFusion`` or your own), with one
``--weights`` entry per model. Prints one COCO box AP table (every model and the
fusion, pycocotools) and writes the fused detections as COCO JSON (atomically).

``--tune-weights`` searches the models' weights (and ``iou_thr`` where the fuser
has one) on the images at even positions in id order, reports the best with its
AP on the other half, and fuses everything with it.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


from divdet.apis import run_main  # noqa: E402
from divdet.apis.cli import ArgumentParser, KeyValueAction, number  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file', help='the COCO annotation file of the images')
    parser.add_argument('results', nargs='+', help='COCO result .json or test.py --out .pkl')
    parser.add_argument('--fusion', default='WeightedBoxesFusion',
                        help='a fuser registered in TASK_UTILS')
    parser.add_argument('--weights', type=number('(0, inf)'), nargs='+',
                        help='one weight per model')
    parser.add_argument('--fusion-options', nargs='+', action=KeyValueAction, default={},
                        help='the fuser\'s other arguments, e.g. iou_thr=0.6 conf_type=max')
    parser.add_argument('--classes', nargs='+',
                        help='for pickles: the class names their labels index (default: the '
                             "annotation file's categories in file order)")
    parser.add_argument('--out', help='fused detections, COCO result JSON '
                                      '(default: fused.bbox.json beside the first result)')
    parser.add_argument('--metrics-out', help='the table as JSON')
    parser.add_argument('--no-eval', action='store_true',
                        help='only fuse (an annotation file without annotations)')
    parser.add_argument('--tune-weights', action='store_true')
    parser.add_argument('--tune-weight-values', type=number('(0, inf)'), nargs='+',
                        default=[1.0, 2.0, 3.0])
    parser.add_argument('--tune-iou-values', type=number('(0, 1]'), nargs='+',
                        default=[0.4, 0.5, 0.55, 0.6, 0.7])
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from divdet.datasets.coco import CheckedCOCO
    from divdet.evaluation.metrics.divided_coco_metric import DividedCocoMetric
    from divdet.fusion import build_fuser
    from divdet.fusion.results import (
        evaluate,
        fuse_detections,
        load_detections,
        to_coco_results,
        tune,
    )
    from divdet.utils.errors import ConfigError
    from divdet.utils.files import check_writable, write_output

    out = args.out or osp.join(osp.dirname(osp.abspath(args.results[0])), 'fused.bbox.json')
    check_writable(out, '--out')
    if args.metrics_out:
        check_writable(args.metrics_out, '--metrics-out')
    start = time.perf_counter()
    coco = CheckedCOCO(args.ann_file)
    models = [load_detections(path, coco, args.classes) for path in args.results]
    if args.weights is not None and len(args.weights) != len(models):
        raise ConfigError(f'--weights: expected one weight per model ({len(models)}), found '
                          f'{len(args.weights)}')
    cfg = dict(args.fusion_options, type=args.fusion)
    if args.weights is not None:
        cfg['weights'] = args.weights
    build_fuser(cfg)  # a bad fusion config fails before any work
    loaded = time.perf_counter()
    report = {}
    if args.tune_weights:
        found = tune(models, cfg, coco, args.tune_weight_values, args.tune_iou_values,
                     build_fuser)
        best = found['best']
        print(f"tuned on {found['tune_images']} images ({len(found['trials'])} settings): "
              f"weights {best['weights']}" +
              (f", iou_thr {best['iou_thr']}" if best['iou_thr'] is not None else '') +
              f"; AP {100 * best['tune_mAP']:.1f} there, {100 * best['held_out_mAP']:.1f} on "
              f"the other {found['held_out_images']} images")
        cfg['weights'] = best['weights']
        if best['iou_thr'] is not None:
            cfg['iou_thr'] = best['iou_thr']
        report['tuning'] = found
    fuser = build_fuser(cfg)
    fused = fuse_detections(models, fuser, coco)
    fused_at = time.perf_counter()
    write_output(json.dumps(to_coco_results(fused)).encode(), out, '--out')
    print(f'{len(models)} models, {len(coco.getImgIds())} images: loaded in '
          f'{loaded - start:.1f} s, fused ({fuser!r}) in {fused_at - loaded:.2f} s; '
          f'{fused.num_boxes()} fused detections written to {out}')
    if not args.no_eval:
        rows = [(m.name, evaluate(m, coco)) for m in models]
        rows.append((f'fused ({type(fuser).__name__})', evaluate(fused, coco)))
        print(DividedCocoMetric.summary_table(rows))
        report.update(fusion=cfg, rows=[dict(model=n, **m) for n, m in rows])
    if args.metrics_out:
        write_output(json.dumps(report, indent=1).encode(), args.metrics_out, '--metrics-out')


if __name__ == '__main__':
    run_main(main)
