# efficientnet-b0 divided into S=1 member(s) on ImageNet-1k at 224 px (the base pipelines);
# recipe in _base_/efficientnet_imagenet_divided.py.
_base_ = './_base_/efficientnet_imagenet_divided.py'

model = dict(num_members=1, backbone=dict(arch='efficientnet-b0'))
