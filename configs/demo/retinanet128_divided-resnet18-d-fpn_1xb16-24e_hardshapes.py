# RetinaNet on the hard shapes task (the SSD study's data and schedule): a divided
# ResNet-18-D (S=2), an FPN per member (P3-P7: 16x16 to 1x1 at 128x128) and a
# RetinaHead per member, focal loss, co-training over each anchor's per-class
# Bernoulli distributions, the members' detections fused with WBF. The FPN and head
# widths are the undivided ones (128); each member gets 128/sqrt(S).
# `python tools/misc/make_shapes.py --preset hard` writes data/hard_shapes.
_base_ = './ssd128_divided-resnet18-d_1xb16-24e_hardshapes.py'

# ---- what people change most ------------------------------------------------
base_lr = 0.02
width = 128  # undivided FPN and head width

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
    backbone=dict(type='DividedResNet', arch='resnet18-d', out_indices=(1, 2, 3)),
    neck=dict(type='DividedFPN', out_channels=width, add_extra_convs='on_input', num_outs=5),
    bbox_head=dict(
        type='DividedDenseHead',
        loss_cot=dict(type='CoTrainingLoss', loss_weight=0.5),  # sigmoid: set from the head
        head=dict(
            type='RetinaHead',
            num_classes=8,  # the hard preset's classes
            in_channels=width,
            stacked_convs=2,
            feat_channels=width,
            # trained from scratch: GroupNorm in the stacked convs (without it S=1 reached
            # 4.9 AP on the held-out fifth at lr 0.02, with it 21.3; docs/study.md)
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=2,  # 16 px at stride 8: objects down to 9 px
                scales_per_octave=3,
                ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                          loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                      ignore_iof_thr=-1),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100,
        ensemble=dict(type='WeightedBoxesFusion', iou_thr=0.5, skip_box_thr=1e-4,
                      conf_type='avg')))

# focal-loss heads spike early at larger learning rates (lr 0.04 without clipping gave a
# NaN loss at iteration 145): gradients clipped as in mmdet's FCOS and ATSS recipes
optim_wrapper = dict(optimizer=dict(lr=base_lr), clip_grad=dict(max_norm=35, norm_type=2))
