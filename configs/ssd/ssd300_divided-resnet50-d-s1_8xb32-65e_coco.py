# SSD300, resnet50-d backbone divided into S=1 member(s), COCO 2017.
# Everything else as configs/ssd_divided_resnet50_coco.py (reference schedule).
_base_ = '../ssd_divided_resnet50_coco.py'

model = dict(num_members=1, backbone=dict(arch='resnet50-d'))
