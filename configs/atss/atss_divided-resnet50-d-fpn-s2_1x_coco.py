# ATSS with a ResNet-50-D divided into S=2 members, COCO 2017, 1x schedule.
#
# Each member: a divided ResNet-50-D, its own FPN (mmdet's FPN, width 256/sqrt(S))
# and its own ATSSHead (stacked GroupNorm convs of 256/sqrt(S) channels, rounded to
# a multiple of the 32 groups): S members have about the parameters of one network (python tools/analysis_tools/get_flops.py CONFIG).
# Losses: each member's focal, GIoU and centerness losses plus the co-training term over every
# anchor's per-class Bernoulli distributions (the head is a sigmoid classifier); at
# test time the members' detections are fused with Weighted Boxes Fusion. mmdet's
# recipe otherwise (atss_r50_fpn_1x_coco.py). The neck and head widths below are
# the undivided (S=1) ones.
_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['divdet'], allow_failed_imports=False)

# ---- what people change most ------------------------------------------------
data_root = 'data/coco/'
max_epochs = 12

model = dict(
    _delete_=True,
    type='DividedSingleStageDetector',
    num_members=2,  # S: the only place it is set
    data_preprocessor=dict(
        type='CheckedDetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(type='DividedResNet', arch='resnet50-d', out_indices=(0, 1, 2, 3)),
    neck=dict(type='DividedFPN', out_channels=256, start_level=1, add_extra_convs='on_output',
              num_outs=5),
    bbox_head=dict(
        type='DividedDenseHead',
        loss_cot=dict(type='CoTrainingLoss', loss_weight=0.5),  # sigmoid: set from the head
        head={{_base_.model.bbox_head}}),
    train_cfg={{_base_.model.train_cfg}},
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100,
        ensemble=dict(type='WeightedBoxesFusion', iou_thr=0.55, skip_box_thr=1e-4,
                      conf_type='avg')))

train_dataloader = dict(dataset=dict(type='CheckedCocoDataset', data_root=data_root))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset', data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(type='DividedCocoMetric',
                     ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    dict(type='CoTrainingHook', warmup=8),
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW')
]
# checkpoints written whole before old ones are removed, as plain data (divdet.engine)
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', interval=1))
