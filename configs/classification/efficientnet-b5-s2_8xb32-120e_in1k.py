# efficientnet-b5 divided into S=2 member(s) on ImageNet-1k at 456 px;
# recipe in _base_/efficientnet_imagenet_divided.py.
_base_ = './_base_/efficientnet_imagenet_divided.py'

resolution = 456
model = dict(num_members=2, backbone=dict(arch='efficientnet-b5'),
             head=dict(head=dict(dropout_rate=0.4)))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='MemberViews', transforms=[
        dict(type='RandomResizedCrop', scale=resolution, backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='AutoAugment', policies='imagenet', hparams=dict(pad_val=[104, 116, 124])),
    ]),
    dict(type='PackInputs'),
]))
val_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=resolution * 256 // 224, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=resolution),
    dict(type='PackInputs'),
]))
test_dataloader = val_dataloader
