# The EfficientNet-B0 shapes demo on a recipe it learns from: twice the schedule
# (48 epochs) and gradient clipping at norm 10. With the ResNet demo's 24 epochs and
# no clipping the members underfit, and with a rate that stays high for longer the
# training diverges (docs/method.md, "Other backbones in the divided SSD").
_base_ = './ssd128_divided-efficientnet-b0_1xb16-24e_shapes.py'

max_epochs = 48
base_lr = 0.02
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min=base_lr * 0.01)
]
optim_wrapper = dict(clip_grad=dict(max_norm=10, norm_type=2))
default_hooks = dict(checkpoint=dict(interval=max_epochs))
