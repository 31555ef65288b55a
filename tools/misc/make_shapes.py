"""Write an embedded shapes dataset (COCO format) for the demo configs.

Usage:
    python tools/misc/make_shapes.py [--preset quick|hard] [--out DIR] [--seed 0]

``quick`` (default, ``data/shapes``) is the demo's 3-class task
(``configs/demo/ssd128_divided-resnet18-d_1xb16-24e_shapes.py``); ``hard``
(``data/hard_shapes``) is the 8-class task with clutter, small and overlapping
objects (``configs/demo/ssd128_divided-resnet18-d_1xb16-24e_hardshapes.py``).
"""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from divdet.apis import run_main  # noqa: E402
from divdet.apis.cli import SEED, ArgumentParser  # noqa: E402

DEFAULT_OUT = {'quick': 'data/shapes', 'hard': 'data/hard_shapes'}


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', choices=sorted(DEFAULT_OUT), default='quick')
    parser.add_argument('--out', help='output folder (default: data/shapes or data/hard_shapes)')
    parser.add_argument('--seed', type=SEED, default=0)
    args = parser.parse_args()
    from divdet.datasets import make_hard_shapes_dataset, make_shapes_dataset
    make = make_hard_shapes_dataset if args.preset == 'hard' else make_shapes_dataset
    out = args.out or osp.join(ROOT, DEFAULT_OUT[args.preset])
    files = make(out, seed=args.seed)
    print(f'wrote the {args.preset} shapes dataset: ' + ', '.join(str(f) for f in files.values()))


if __name__ == '__main__':
    run_main(main)
