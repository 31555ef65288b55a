# densenet-bc190-k40-cifar divided into S=1 member(s) on CIFAR100; recipe in _base_/cifar100_divided.py.
_base_ = './_base_/cifar100_divided.py'

model = dict(num_members=1, backbone=dict(type='DividedBackbone', arch='densenet-bc190-k40-cifar'))
