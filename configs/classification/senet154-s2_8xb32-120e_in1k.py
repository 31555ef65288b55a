# senet154 divided into S=2 member(s) on ImageNet-1k (groups 64 / S); recipe in _base_/imagenet_divided.py.
_base_ = './_base_/imagenet_divided.py'

model = dict(num_members=2, backbone=dict(type='DividedBackbone', arch='senet154'))
