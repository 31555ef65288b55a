# seresnet164-cifar divided into S=2 member(s) on CIFAR100; recipe in _base_/cifar100_divided.py.
_base_ = './_base_/cifar100_divided.py'

model = dict(num_members=2, backbone=dict(type='DividedBackbone', arch='seresnet164-cifar'))
