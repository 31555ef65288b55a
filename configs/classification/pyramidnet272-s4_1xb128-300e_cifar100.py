# pyramidnet272-cifar divided into S=4 member(s) on CIFAR100; recipe in _base_/cifar100_divided.py.
_base_ = './_base_/cifar100_divided.py'

model = dict(num_members=4, backbone=dict(type='DividedBackbone', arch='pyramidnet272-cifar'))
