# SSD300 with a ResNet-50-D divided into S=2 members, COCO 2017.
#
# Each member: a divided ResNet-50-D (base width 44) truncated after layer3
# with layer3 stride 1 (38x38 map at 300x300), its own SSD extra layers and its
# own SSD head; losses are the members' SSD losses plus the co-training term;
# at test time the members' detections are fused with Weighted Boxes Fusion.
# The neck/head widths below are the undivided (S=1) ones: the divided parts
# derive member widths from S (divdet/models/backbones/division.py).
#
# Schedule of the reference (Zhao et al., Divide and Co-training, TIP 2022): SGD Nesterov, momentum 0.9,
# wd 5e-4, lr 2.6e-3 per 32 images, 65 epochs, x0.1 at epochs 43 and 54.
# The reference trains with AMP: add --amp on a GPU.
# Reference's exact head layout: --cfg-options model.bbox_head.share_head=True
# model.bbox_head.loss_cot=None (one shared prediction head, no co-training).
_base_ = 'mmdet::ssd/ssd300_coco.py'
custom_imports = dict(imports=['divdet'], allow_failed_imports=False)

# ---- what people change most ------------------------------------------------
data_root = 'data/coco/'
train_batch_size_per_gpu = 32  # reference: 32 per GPU (8 GPUs)
max_epochs = 65
base_lr = 2.6e-3 * 8  # 2.6e-3 per 32 images x 256 images (8 GPUs x 32)
input_size = 300

model = dict(
    _delete_=True,
    type='DividedSingleStageDetector',
    num_members=2,  # S: the only place it is set
    data_preprocessor=dict(
        type='CheckedDetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='DividedResNet',
        arch='resnet50-d',
        num_stages=3,
        strides=(1, 2, 1),
        dilations=(1, 1, 1),
        out_indices=(2, ),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(
        type='DividedSSDNeck',
        out_channels=(1024, 512, 512, 256, 256, 256),
        level_strides=(2, 2, 2, 1, 1),
        level_paddings=(1, 1, 1, 0, 0),
        l2_norm_scale=None,
        norm_cfg=dict(type='BN')),
    bbox_head=dict(
        type='DividedSSDHead',
        share_head=False,
        loss_cot=dict(type='CoTrainingLoss', loss_weight=0.5),
        head=dict(
            type='SSDHead',
            num_classes=80,
            anchor_generator=dict(
                type='SSDAnchorGenerator',
                scale_major=False,
                input_size=input_size,
                basesize_ratio_range=(0.15, 0.9),
                strides=[8, 16, 32, 64, 100, 300],
                ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[.0, .0, .0, .0],
                target_stds=[0.1, 0.1, 0.2, 0.2]))),
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.,
            ignore_iof_thr=-1,
            gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        smoothl1_beta=1.,
        allowed_border=-1,
        pos_weight=-1,
        neg_pos_ratio=3,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=0,
        score_thr=0.02,
        max_per_img=200,
        # Fusion of the members' detections (the reference's WBF settings; any
        # fuser registered in TASK_UTILS, see divdet.fusion).
        ensemble=dict(type='WeightedBoxesFusion', iou_thr=0.5, skip_box_thr=1e-4,
                      conf_type='avg', weights=None)))

train_dataloader = dict(
    batch_size=train_batch_size_per_gpu,
    num_workers=4,
    dataset=dict(
        _delete_=True,
        type='CheckedCocoDataset',
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset', data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(type='DividedCocoMetric', ann_file=data_root +
                     'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# Test-time augmentation (`tools/test.py --tta`, also mmdet's): the image and its flip;
# DividedDetTTAModel merges every member's views as the ensemble's.
tta_model = dict(type='DividedDetTTAModel',
                 tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(input_size, input_size), keep_ratio=False)],
        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
        [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                               'scale_factor', 'flip', 'flip_direction'))]])
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[43, 54],
         gamma=0.1)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='DividedOptimWrapperConstructor',  # no decay on norm and bias
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, nesterov=True, weight_decay=5e-4))
auto_scale_lr = dict(enable=False, base_batch_size=256)

custom_hooks = [
    dict(type='CoTrainingHook', warmup=40),
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW')
]
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', interval=5, max_keep_ckpts=3,
                                     save_best='coco/bbox_mAP'))
