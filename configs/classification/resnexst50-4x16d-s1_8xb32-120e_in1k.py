# resnexst50-4x16d divided into S=1 member(s) on ImageNet-1k; recipe in _base_/imagenet_divided.py.
_base_ = './_base_/imagenet_divided.py'

model = dict(num_members=1, backbone=dict(arch='resnexst50-4x16d'))
