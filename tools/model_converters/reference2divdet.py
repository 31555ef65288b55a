"""Convert a checkpoint released with the reference implementation to divdet.

Usage:
    python tools/model_converters/reference2divdet.py CONFIG SRC DST

CONFIG is the divdet classification config with the same arch and S (e.g.
``configs/classification/resnet50-d-s2_8xb32-120e_in1k.py`` for the reference's
``resnet50`` with ``split_factor=2``). The keys ``[module.]models.<i>.*`` become
member ``i`` of the backbone and head; every tensor is checked against the
model's. Use DST as ``load_from``, or for a detector's backbone as
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
"""
import argparse

from divdet.apis import run_main
from divdet.apis.converters import convert_checkpoint, reference_to_divdet


def main() -> None:
    parser = argparse.ArgumentParser(description='reference SplitNet checkpoint -> divdet')
    parser.add_argument('config', help='the divdet config whose model receives the weights')
    parser.add_argument('src', help='the source checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the divdet checkpoint (.pth)')
    args = parser.parse_args()
    fitted = convert_checkpoint(args.config, args.src, args.dst, reference_to_divdet,
                                'reference SplitNet')
    print(f'{len(fitted)} tensors from {args.src} (reference SplitNet) written to {args.dst}')


if __name__ == '__main__':
    run_main(main)
