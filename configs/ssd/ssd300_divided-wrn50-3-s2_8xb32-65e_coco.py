# SSD300, wide-resnet50-3 backbone divided into S=2 member(s), COCO 2017.
# Everything else as configs/ssd_divided_resnet50_coco.py (reference schedule).
_base_ = '../ssd_divided_resnet50_coco.py'

model = dict(num_members=2, backbone=dict(arch='wide-resnet50-3'))
