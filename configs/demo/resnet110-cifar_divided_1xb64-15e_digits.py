# Classification demo: scikit-learn's handwritten digits (real scans, 16x16),
# a CIFAR ResNet-110 as S=1 (base width 16) or S=2 (two members of width 12,
# about the same parameters), trained with co-training and per-member views.
# `python tools/demo/run_cls_demo.py` trains and evaluates S=1 and S=2.
_base_ = ['mmpretrain::_base_/default_runtime.py']
default_scope = 'mmpretrain'
custom_imports = dict(imports=['divdet'], allow_failed_imports=False)

# ---- what people change most ------------------------------------------------
data_root = 'data/digits/'
max_epochs = 15
batch_size = 64
input_size = 16  # the images' side (FLOPs are quoted at it)
base_lr = 0.1

model = dict(
    type='DividedImageClassifier',
    num_members=2,  # S: the only place it is set
    data_preprocessor=dict(num_classes=10, mean=[33.0] * 3, std=[60.0] * 3, to_rgb=False),
    backbone=dict(type='DividedResNet', arch='resnet110-cifar'),
    neck=dict(type='DividedNeck', neck=dict(type='GlobalAveragePooling')),
    head=dict(
        type='DividedClsHead',
        loss_cot=dict(type='CoTrainingLoss', loss_weight=0.5),
        head=dict(type='LinearClsHead', num_classes=10,
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0))))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MemberViews', transforms=[  # one view per member
        dict(type='RandomCrop', crop_size=input_size, padding=2),
        dict(type='RandomErasing', erase_prob=0.25, mode='const', min_area_ratio=0.02,
             max_area_ratio=0.1, fill_color=0),
    ]),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='DividedAccuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    constructor='DividedOptimWrapperConstructor',
    scale_weight_decay=True,
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, nesterov=True, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, T_max=max_epochs - 1,
         eta_min=0)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
custom_hooks = [dict(type='CoTrainingHook', warmup=3), dict(type='ProgressBarHook')]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='SafeCheckpointHook', interval=max_epochs, max_keep_ckpts=1))
randomness = dict(seed=0)
