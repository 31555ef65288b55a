# Divided EfficientNet on ImageNet-1k: the ImageNet recipe of imagenet_divided.py with
# EfficientNet members (stem, stage and head channels per S from the reference's
# tables) and drop-path 0.2 of the undivided network, divided by sqrt(S). Each
# variant's config sets its resolution (B0 224 ... B7 600) in its pipelines.
_base_ = './imagenet_divided.py'

model = dict(backbone=dict(type='DividedBackbone', arch='efficientnet-b0', drop_path_rate=0.2))
