# The harder embedded detection task: the demo's divided SSD (ResNet-18-D, S=2,
# 128x128) on the 'hard' shapes preset (divdet.datasets.make_hard_shapes_dataset:
# 8 classes of shape x texture, up to 8 objects per image, small and overlapping
# objects, unannotated clutter). Used to measure S and co-training variants with
# tools/analysis_tools/division_study.py; the quick demo config stays as it is.
_base_ = './ssd128_divided-resnet18-d_1xb16-24e_shapes.py'

# ---- what people change most ------------------------------------------------
data_root = 'data/hard_shapes/'
classes = ('filled-circle', 'outline-circle', 'filled-square', 'outline-square',
           'filled-triangle', 'outline-triangle', 'filled-diamond', 'outline-diamond')

input_size = 128
per_member_views = False  # True: each member its own photometric view (DetMemberViews)

model = dict(bbox_head=dict(head=dict(num_classes=len(classes))))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    # geometry above is shared by the members; the photometric draws below are
    # one for all members, or one per member with per_member=True (pipeline.4)
    dict(type='DetMemberViews', per_member=per_member_views, transforms=[
        dict(type='PhotoMetricDistortion', brightness_delta=24, contrast_range=(0.7, 1.3),
             saturation_range=(0.7, 1.3), hue_delta=12),
        dict(type='RandomNoiseBlur', noise_prob=0.5, noise_std=(2.0, 10.0), blur_prob=0.3,
             blur_sigma=(0.3, 1.2))]),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                    'flip_direction', 'member_views'))
]
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
