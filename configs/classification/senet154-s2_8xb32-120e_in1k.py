# senet154 divided into S=2 member(s) on ImageNet-1k (groups 64 / S); recipe in _base_/imagenet_divided.py.
_base_ = './_base_/imagenet_divided.py'

model = dict(num_members=2, backbone=dict(type='DividedBackbone', arch='senet154'),
             # dropout 0.2 before the classifier (the SENet paper's), divided by sqrt(S)
             head=dict(head=dict(type='DropoutLinearClsHead', dropout_rate=0.2)))
