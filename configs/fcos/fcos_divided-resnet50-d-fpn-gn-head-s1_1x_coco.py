# FCOS, ResNet-50-D, S=1: the undivided network of fcos_divided-resnet50-d-fpn-gn-head-s2_1x_coco.py.
_base_ = './fcos_divided-resnet50-d-fpn-gn-head-s2_1x_coco.py'
model = dict(num_members=1)
