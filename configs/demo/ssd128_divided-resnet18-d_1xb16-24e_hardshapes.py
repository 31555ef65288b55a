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

model = dict(bbox_head=dict(head=dict(num_classes=len(classes))))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
