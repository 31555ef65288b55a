# The shapes demo with another family: a divided SSD on EfficientNet-B0 members
# (S=2, 128x128), trained from scratch on the CPU. Every divided backbone whose
# members return stage outputs plugs in the same way: the neck reads the members'
# channels from the backbone. EfficientNet's strides: stage 3 (index 2) is 8,
# stage 5 (index 4) is 16; later stages and the head conv are not built.
_base_ = './ssd128_divided-resnet18-d_1xb16-24e_shapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DividedBackbone',
        arch='efficientnet-b0',
        num_stages=5,
        out_indices=(2, 4),  # stride 8 and 16 maps: 16x16 and 8x8
        conv_cfg=dict(type='Conv2d')))
