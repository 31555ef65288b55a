"""Convert a torchvision ResNet-50 state dict to a divdet backbone member.

Usage:
    python tools/model_converters/torchvision2divdet.py CONFIG SRC DST

CONFIG's backbone must be ``DividedResNet(arch='resnet50')`` with
``num_members=1``: torchvision's widths are those of the undivided network (a
divided member is narrower, and the converter says so). The ``fc`` classifier
is kept for a 1000-class classifier and dropped for a detector. Use DST as
``load_from`` or as the backbone's
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
"""
import argparse

from divdet.apis import run_main
from divdet.apis.converters import convert_checkpoint, torchvision_to_divdet


def main() -> None:
    parser = argparse.ArgumentParser(description='torchvision ResNet-50 state dict -> divdet')
    parser.add_argument('config', help='the divdet config whose model receives the weights')
    parser.add_argument('src', help='the source checkpoint (.pth)')
    parser.add_argument('dst', help='where to write the divdet checkpoint (.pth)')
    args = parser.parse_args()
    fitted = convert_checkpoint(args.config, args.src, args.dst, torchvision_to_divdet,
                                'torchvision ResNet-50')
    print(f'{len(fitted)} tensors from {args.src} (torchvision ResNet-50) written to {args.dst}')


if __name__ == '__main__':
    run_main(main)
