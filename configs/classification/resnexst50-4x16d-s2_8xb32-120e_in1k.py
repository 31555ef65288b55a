# resnexst50-4x16d divided into S=2 member(s) on ImageNet-1k; recipe in _base_/imagenet_divided.py.
_base_ = './_base_/imagenet_divided.py'

model = dict(num_members=2, backbone=dict(arch='resnexst50-4x16d'))
