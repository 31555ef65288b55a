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
from divdet.apis import run_main
from divdet.apis.converters import converter_main, torchvision_to_divdet

if __name__ == '__main__':
    run_main(lambda: converter_main(torchvision_to_divdet, 'torchvision ResNet-50'))
