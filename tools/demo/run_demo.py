"""The embedded demo: generate shapes data, train a divided SSD, evaluate members and ensemble.

Usage (from the repository root, inside the project's environment; `make demo`
runs the set-up first):

    python tools/demo/run_demo.py [--config CFG] [--work-dir DIR] [--data-root DIR]

Steps, each the command a user would run:
  1. write data/shapes (COCO format) unless it is already there;
  2. python tools/train.py CONFIG --work-dir DIR
  3. python tools/test.py CONFIG DIR/epoch_N.pth --work-dir DIR
  4. print the ensemble / member COCO AP table and save it as DIR/demo_results.json
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = 'configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py'
COLUMNS = (('bbox_mAP', 'AP'), ('bbox_mAP_50', 'AP50'), ('bbox_mAP_75', 'AP75'))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/shapes')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='passed to tools/train.py and tools/test.py')
    return parser.parse_args()


def run(*cmd: str) -> None:
    print(f'\n$ {" ".join(cmd)}', flush=True)
    proc = subprocess.run([sys.executable, *cmd], cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f'demo: `{" ".join(cmd)}` failed with exit code {proc.returncode}')


def latest_metrics(work_dir: str) -> dict:
    """The metrics JSON that tools/test.py's logger wrote last."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)
    if not files:
        sys.exit(f'demo: no metrics file under {work_dir}/*/')
    return json.loads(open(files[-1]).read().strip().splitlines()[-1])


def table(metrics: dict) -> list[tuple[str, dict]]:
    rows = [('ensemble', '')]
    i = 0
    while f'coco/member{i}_bbox_mAP' in metrics:
        rows.append((f'member {i}', f'member{i}_'))
        i += 1
    return [(name, {h: metrics[f'coco/{prefix}{key}'] for key, h in COLUMNS})
            for name, prefix in rows]


def main() -> None:
    args = parse_args()
    start = time.time()
    os.chdir(ROOT)
    ann = osp.join(args.data_root, 'annotations', 'instances_val.json')
    if osp.exists(ann):
        print(f'demo: using the existing dataset in {args.data_root}')
    else:
        sys.path.insert(0, ROOT)
        from divdet.datasets import make_shapes_dataset
        print(f'demo: writing the shapes dataset to {args.data_root}')
        make_shapes_dataset(args.data_root)
    options = ['--cfg-options', *args.cfg_options] if args.cfg_options else []
    run('tools/train.py', args.config, '--work-dir', args.work_dir, *options)
    checkpoint = open(osp.join(args.work_dir, 'last_checkpoint')).read().strip()
    run('tools/test.py', args.config, checkpoint, '--work-dir', args.work_dir, *options)
    rows = table(latest_metrics(args.work_dir))
    minutes = (time.time() - start) / 60
    print(f'\nDemo finished in {minutes:.1f} min. COCO box AP on the {args.data_root} val split:')
    print(f"{'model':<10}" + ''.join(f'{h:>8}' for _, h in COLUMNS))
    for name, values in rows:
        print(f'{name:<10}' + ''.join(f'{values[h]:>8.3f}' for _, h in COLUMNS))
    out = osp.join(args.work_dir, 'demo_results.json')
    with open(out + '.part', 'w') as f:
        json.dump(dict(config=args.config, minutes=round(minutes, 1), results=dict(rows)), f,
                  indent=2)
    os.replace(out + '.part', out)
    print(f'(saved to {out})')


if __name__ == '__main__':
    main()
