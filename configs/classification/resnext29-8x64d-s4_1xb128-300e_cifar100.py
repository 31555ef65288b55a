# resnext29-8x64d-cifar divided into S=4 member(s) on CIFAR100; recipe in _base_/cifar100_divided.py.
_base_ = './_base_/cifar100_divided.py'

model = dict(num_members=4, backbone=dict(arch='resnext29-8x64d-cifar'))
