# Divided classifiers on ImageNet-1k: the reference recipe (Zhao et al., Divide and Co-training, TIP 2022).
# SGD (Nesterov, momentum 0.9, wd 1e-4 scaled by exp(1/S - 1), none on norm and
# bias), 8 GPUs x 32 images, lr 0.1 per 256 images, 5-epoch warm-up then cosine,
# 120 epochs; label smoothing 0.1; Mixup (alpha 0.2) shared across members; each
# member sees its own view (random resized crop, flip, AutoAugment, random
# erasing); co-training weight 0.5 with a 60-epoch warm-up.
_base_ = ['mmpretrain::_base_/default_runtime.py']
default_scope = 'mmpretrain'
custom_imports = dict(imports=['divdet'], allow_failed_imports=False)

# ---- what people change most ------------------------------------------------
data_root = 'data/imagenet/'
batch_size = 32  # per GPU
max_epochs = 120
base_lr = 0.1

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
model = dict(
    type='DividedImageClassifier',
    num_members=2,  # S: the only place it is set
    data_preprocessor=dict(num_classes=1000, mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='DividedResNet', arch='resnet50-d'),
    neck=dict(type='DividedNeck', neck=dict(type='GlobalAveragePooling')),
    head=dict(
        type='DividedClsHead',
        ensemble='logits',
        loss_cot=dict(type='CoTrainingLoss', loss_weight=0.5),
        head=dict(type='LinearClsHead', num_classes=1000,
                  loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'))),
    train_cfg=dict(augments=dict(type='Mixup', alpha=0.2)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MemberViews', transforms=[  # one view per member
        dict(type='RandomResizedCrop', scale=224, backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='AutoAugment', policies='imagenet', hparams=dict(pad_val=[round(x) for x in
                                                                            bgr_mean])),
        dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
             max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    ]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=8,
    dataset=dict(type='ImageNet', data_root=data_root, split='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(type='ImageNet', data_root=data_root, split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='DividedAccuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(
    constructor='DividedOptimWrapperConstructor',
    scale_weight_decay=True,  # wd * exp(1/S - 1)
    optimizer=dict(type='SGD', lr=base_lr * 8 * batch_size / 256, momentum=0.9, nesterov=True,
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=max_epochs, T_max=max_epochs - 5,
         eta_min=0)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=256)
custom_hooks = [dict(type='CoTrainingHook', warmup=60)]
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', interval=5, max_keep_ckpts=2,
                                     save_best='accuracy/top1'))
