"""Test (and evaluate) a checkpoint of a divdet / mmdet / mmpretrain config.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show-dir DIR] [--tta] [--cfg-options k=v ...]
        [--launcher pytorch]

For divided detectors the COCO metric reports the ensemble and every member
side by side; for divided classifiers, top-1/top-5 of the ensemble and members.
"""
import argparse

from divdet.apis import (
    ArgumentParser,
    add_common_args,
    apply_test_args,
    build_runner,
    dump_metric,
    load_config,
    parse_cli,
    run_main,
    write_dump,
)


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description='Test (and evaluate) a divdet model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the metrics file')
    parser.add_argument('--out', type=str,
                        help='dump predictions to a pickle file (.pkl) for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='save painted images under work_dir/TIMESTAMP/SHOW_DIR')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation with the config's tta_model and "
                        'tta_pipeline (default: the image and its flip, merged by NMS)')
    add_common_args(parser)
    return parse_cli(parser)


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args)
    apply_test_args(cfg, args)
    runner = build_runner(cfg)
    dump = None
    if args.out is not None:  # written after the metrics: a failed write loses none
        dump = dump_metric(cfg, args.out)
        evaluator = runner.test_evaluator  # built with the test loop, its dataset_meta set
        evaluator.metrics.append(dump)
        dump.dataset_meta = evaluator.dataset_meta  # the classes the samples carry
    runner.test()
    if dump is not None:
        write_dump(dump, args.out)


if __name__ == '__main__':
    run_main(main)
