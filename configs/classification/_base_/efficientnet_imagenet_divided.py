# Divided EfficientNet on ImageNet-1k: the ImageNet recipe of imagenet_divided.py with
# EfficientNet members (stem, stage and head channels per S from the reference's
# tables), drop-path 0.2 and dropout before the classifier (0.2 for B0 and B1, 0.3 B2
# and B3, 0.4 B4 and B5, 0.5 B6 and B7, as in the EfficientNet paper's code) of the
# undivided network, each divided by sqrt(S). Each variant's config sets its
# resolution (B0 224 ... B7 600) in its pipelines.
_base_ = './imagenet_divided.py'

model = dict(backbone=dict(type='DividedBackbone', arch='efficientnet-b0', drop_path_rate=0.2),
             head=dict(head=dict(type='DropoutLinearClsHead', dropout_rate=0.2)))
