# ATSS, ResNet-50-D, S=1: the undivided network of atss_divided-resnet50-d-fpn-s2_1x_coco.py.
_base_ = './atss_divided-resnet50-d-fpn-s2_1x_coco.py'
model = dict(num_members=1)
