"""Small divided SSD configs for tests (64x64 input, 3 classes)."""
import copy

import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

HEAD = dict(
    type='SSDHead', num_classes=3,
    anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False, input_size=64,
                          strides=[8, 16, 32], ratios=[[2], [2], [2]],
                          min_sizes=[8, 20, 40], max_sizes=[20, 40, 64]),
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                    target_stds=[0.1, 0.1, 0.2, 0.2]))
TRAIN_CFG = dict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.,
                  ignore_iof_thr=-1, gt_max_assign_all=False),
    sampler=dict(type='PseudoSampler'), smoothl1_beta=1., allowed_border=-1, pos_weight=-1,
    neg_pos_ratio=3, debug=False)
TEST_CFG = dict(nms_pre=100, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0,
                score_thr=0.02, max_per_img=50)


def detector_cfg(num_members: int = 2, **head_kwargs) -> dict:
    return dict(
        type='DividedSingleStageDetector', num_members=num_members,
        data_preprocessor=dict(type='CheckedDetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=dict(type='DividedResNet', arch='resnet18-d', num_stages=3, strides=(1, 2, 2),
                      dilations=(1, 1, 1), out_indices=(1, 2)),
        neck=dict(type='DividedSSDNeck', out_channels=(128, 256, 128), level_strides=(2, ),
                  level_paddings=(1, ), l2_norm_scale=None),
        bbox_head=dict(type='DividedSSDHead', head=copy.deepcopy(HEAD), **head_kwargs),
        train_cfg=copy.deepcopy(TRAIN_CFG), test_cfg=copy.deepcopy(TEST_CFG))


def data_samples(boxes_per_image, size: int = 64):
    samples = []
    for boxes in boxes_per_image:
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             scale_factor=(1.0, 1.0), pad_shape=(size, size)))
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        sample.gt_instances = InstanceData(bboxes=boxes,
                                           labels=torch.zeros(len(boxes), dtype=torch.long))
        samples.append(sample)
    return samples
