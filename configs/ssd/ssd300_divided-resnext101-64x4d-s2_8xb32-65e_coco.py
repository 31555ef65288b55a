# SSD300, resnext101-64x4d backbone divided into S=2 member(s), COCO 2017.
# Everything else as configs/ssd_divided_resnet50_coco.py (reference schedule).
_base_ = '../ssd_divided_resnet50_coco.py'

model = dict(num_members=2, backbone=dict(arch='resnext101-64x4d'))
