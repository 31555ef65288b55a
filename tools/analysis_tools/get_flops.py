"""Parameters and FLOPs of any divdet / mmdet / mmpretrain config, per member and in total.

Usage:
    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]

FLOPs are multiply-accumulates counted by mmengine's FlopAnalyzer for one image
of the given shape; by default the size the config's test pipeline feeds the
model (its fixed ``Resize`` or crop, else the config's ``input_size``; 300x300 for
detection and 224x224 / 32x32 for classification configs that set neither).
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


from divdet.apis.cli import ArgumentParser, KeyValueAction, integer  # noqa: E402
from divdet.apis.complexity import config_complexity  # noqa: E402
from divdet.apis.runner import load_config  # noqa: E402


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=integer(1), nargs=2, help='input height and width')
    parser.add_argument('--cfg-options', nargs='+', action=KeyValueAction)
    args = parser.parse_args()
    cfg = load_config(args.config, argparse.Namespace(cfg_options=args.cfg_options,
                                                      launcher='none', work_dir=None))
    result = config_complexity(cfg, args.config, args.shape)
    shape = result['shape']
    print(f'{args.config}  (input {shape[0]}x{shape[1]})')
    print(f"{'part':<12}{'params (M)':>12}{'GFLOPs':>10}")
    rows = [(f'member {i}', m) for i, m in enumerate(result['members'])]
    rows += [('shared', result['shared']), ('total', result['total'])]
    for name, r in rows:
        print(f"{name:<12}{r['params'] / 1e6:>12.2f}{r['flops'] / 1e9:>10.2f}")


if __name__ == '__main__':
    main()
