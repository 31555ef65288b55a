"""Plot accuracy versus parameters or FLOPs from evaluation runs (PNG).

Usage:
    python tools/analysis_tools/plot_accuracy.py WORK_DIR [WORK_DIR ...] --out plot.png
        [--labels L1 L2 ...] [--metric accuracy/top1] [--x params|flops] [--shape H W]

Each WORK_DIR is a ``tools/test.py`` work directory: the newest metrics file
there and the config mmengine dumped there. Divided models show the ensemble
(dot, total cost) and each member (cross, its own cost).
"""

from divdet.apis import run_main
from divdet.apis.cli import ArgumentParser, integer
from divdet.apis.plot import AXES, plot_points, run_points
from divdet.utils.files import write_output


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dirs', nargs='+', help='tools/test.py work directories')
    parser.add_argument('--out', required=True, help='the PNG to write')
    parser.add_argument('--labels', nargs='+', help='one label per work dir (default: the dir)')
    parser.add_argument('--metric', default='accuracy/top1',
                        help='metric key, e.g. accuracy/top1 or coco/bbox_mAP')
    parser.add_argument('--x', choices=sorted(AXES), default='params')
    parser.add_argument('--shape', type=integer(1), nargs=2, help='input H W for FLOPs')
    parser.add_argument('--title', default='')
    args = parser.parse_args()
    labels = args.labels or args.work_dirs
    if len(labels) != len(args.work_dirs):
        parser.error(f'--labels needs one label per work dir ({len(args.work_dirs)}), '
                     f'found {len(labels)}')
    points = [p for work_dir, label in zip(args.work_dirs, labels)
              for p in run_points(work_dir, label, args.metric, args.x, args.shape)]
    for p in points:
        print(f'{p.run:<12}{p.name:<10}{p.cost:>10.3f} {AXES[args.x][0]:<16}{p.value:>8.3f}')
    write_output(plot_points(points, args.metric, args.x, args.title), args.out, '--out')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    run_main(main)
