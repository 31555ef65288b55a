# RetinaNet, ResNet-50-D, S=1: the undivided network of
# retinanet_divided-resnet50-d-fpn-s2_1x_coco.py (mmdet's RetinaNet with a ResNet-50-D).
_base_ = './retinanet_divided-resnet50-d-fpn-s2_1x_coco.py'
model = dict(num_members=1)
