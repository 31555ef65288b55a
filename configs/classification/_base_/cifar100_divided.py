# Divided classifiers on CIFAR-100: the reference recipe (Zhao et al., Divide and Co-training, TIP 2022).
# SGD (Nesterov, momentum 0.9, wd 5e-4 scaled by exp(1/S - 1), none on norm and
# bias), batch 128, lr 0.1, 5-epoch linear warm-up then cosine decay, 300 epochs;
# co-training weight 0.5 with a 40-epoch linear warm-up; each member sees its own
# augmented view (random crop, flip, RandAugment, random erasing).
_base_ = ['mmpretrain::_base_/default_runtime.py']
default_scope = 'mmpretrain'
custom_imports = dict(imports=['divdet'], allow_failed_imports=False)

# ---- what people change most ------------------------------------------------
dataset_type = 'CIFAR100'
data_root = 'data/cifar100/'
num_classes = 100
batch_size = 128
max_epochs = 300
base_lr = 0.1

model = dict(
    type='DividedImageClassifier',
    num_members=2,  # S: the only place it is set
    data_preprocessor=dict(
        num_classes=num_classes,
        mean=[129.304, 124.070, 112.434],
        std=[68.170, 65.392, 70.418],
        to_rgb=False),
    backbone=dict(type='DividedResNet', arch='wrn28-10-cifar'),
    neck=dict(type='DividedNeck', neck=dict(type='GlobalAveragePooling')),
    head=dict(
        type='DividedClsHead',
        ensemble='logits',
        loss_cot=dict(type='CoTrainingLoss', loss_weight=0.5),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0))))

train_pipeline = [
    dict(type='MemberViews', transforms=[  # one view per member
        dict(type='RandomCrop', crop_size=32, padding=4),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
             magnitude_level=9, magnitude_std=0.5, hparams=dict(pad_val=[104, 116, 124])),
        dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
             max_area_ratio=1 / 3, fill_color=[103.53, 116.28, 123.675],
             fill_std=[57.375, 57.12, 58.395]),
    ]),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=256,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='DividedAccuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(
    constructor='DividedOptimWrapperConstructor',
    scale_weight_decay=True,  # wd * exp(1/S - 1)
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, nesterov=True, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=max_epochs, T_max=max_epochs - 5,
         eta_min=0)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
custom_hooks = [dict(type='CoTrainingHook', warmup=40)]
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', interval=10, max_keep_ckpts=2,
                                     save_best='accuracy/top1'))
