# shake-shake26-2x96d-cifar divided into S=4 member(s) on CIFAR10; recipe in _base_/cifar10_divided.py.
_base_ = './_base_/cifar10_divided.py'

model = dict(num_members=4, backbone=dict(type='DividedBackbone', arch='shake-shake26-2x96d-cifar'))
