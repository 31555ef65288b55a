"""The embedded detection demo: generate shapes data, train a divided SSD, evaluate
the ensemble and every member.

Usage (from the repository root, in the project's environment; `make demo` runs
the set-up first):

    python tools/demo/run_demo.py [--config CFG] [--work-dir DIR] [--data-root DIR]

Steps, each the command a user would run:
  1. write data/shapes (COCO format) unless it is already there;
  2. python tools/train.py CONFIG --work-dir DIR
  3. python tools/test.py CONFIG DIR/epoch_N.pth --work-dir DIR
  4. print the ensemble / member COCO AP table; save it as DIR/demo_results.json
"""
from __future__ import annotations

import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from divdet.apis import run_main  # noqa: E402
from divdet.apis.cli import ArgumentParser  # noqa: E402
from divdet.apis.demo import latest_metrics, member_rows, print_rows, run_tool, write_json  # noqa: E402

DEFAULT_CONFIG = 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py'
COLUMNS = {'bbox_mAP': 'AP', 'bbox_mAP_50': 'AP50', 'bbox_mAP_75': 'AP75'}


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/shapes')
    args = parser.parse_args()
    start = time.time()
    if osp.exists(osp.join(ROOT, args.data_root, 'annotations', 'instances_val.json')):
        print(f'demo: using the existing dataset in {args.data_root}')
    else:
        from divdet.datasets import make_shapes_dataset
        print(f'demo: writing the shapes dataset to {args.data_root}')
        make_shapes_dataset(osp.join(ROOT, args.data_root))
    # the demo retrains from scratch each time (its own work dir; --overwrite says so)
    run_tool(ROOT, 'tools/train.py', args.config, '--work-dir', args.work_dir, '--overwrite')
    with open(osp.join(ROOT, args.work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    run_tool(ROOT, 'tools/test.py', args.config, checkpoint, '--work-dir', args.work_dir)
    rows = member_rows(latest_metrics(osp.join(ROOT, args.work_dir)), 'coco/', COLUMNS)
    minutes = (time.time() - start) / 60
    print(f'\nDemo finished in {minutes:.1f} min. COCO box AP, {args.data_root} val split:')
    print_rows(rows)
    out = osp.join(ROOT, args.work_dir, 'demo_results.json')
    write_json(out, dict(config=args.config, minutes=round(minutes, 1), results=dict(rows)))
    print(f'(saved to {out})')


if __name__ == '__main__':
    run_main(main)
