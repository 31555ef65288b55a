"""The classification demo: S=1 and S=2 ResNet-110 on scikit-learn's digits,
same epochs, about the same parameters; top-1 of the ensemble and every member.

Usage (from the repository root, in the project's environment):

    python tools/demo/run_cls_demo.py [--config CFG] [--work-dir DIR] [--data-root DIR]

For S in (1, 2): python tools/train.py CONFIG --cfg-options model.num_members=S,
then python tools/test.py on the last checkpoint. Results go to
DIR/cls_demo_results.json.
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

DEFAULT_CONFIG = 'configs/demo/resnet110-cifar_divided_1xb64-15e_digits.py'


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default='work_dirs/cls_demo')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--members', type=int, nargs='+', default=[1, 2])
    args = parser.parse_args()
    if osp.isdir(osp.join(ROOT, args.data_root, 'val')):
        print(f'demo: using the existing dataset in {args.data_root}')
    else:
        from divdet.datasets import make_digits_dataset
        print(f'demo: writing the digits dataset to {args.data_root}')
        make_digits_dataset(osp.join(ROOT, args.data_root))
    results = {}
    for s in args.members:
        start = time.time()
        work_dir = osp.join(args.work_dir, f's{s}')
        options = ['--cfg-options', f'model.num_members={s}']
        run_tool(ROOT, 'tools/train.py', args.config, '--work-dir', work_dir, '--overwrite',
                 *options)  # the demo retrains from scratch each time
        with open(osp.join(ROOT, work_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        run_tool(ROOT, 'tools/test.py', args.config, checkpoint, '--work-dir', work_dir,
                 *options)
        rows = member_rows(latest_metrics(osp.join(ROOT, work_dir)), 'accuracy/',
                           {'top1': 'top1'})
        results[f'S={s}'] = dict(minutes=round((time.time() - start) / 60, 1),
                                 rows=dict(rows))
    print('\nTop-1 accuracy (%) on the digits val split:')
    for name, res in results.items():
        print(f'\n{name} ({res["minutes"]} min)')
        print_rows(list(res['rows'].items()), fmt='{:>8.2f}')
    out = osp.join(ROOT, args.work_dir, 'cls_demo_results.json')
    write_json(out, dict(config=args.config, results=results))
    print(f'(saved to {out})')


if __name__ == '__main__':
    run_main(main)
