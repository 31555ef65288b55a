# Divided classifiers on CIFAR-10: the CIFAR-100 recipe with 10 classes.
_base_ = './cifar100_divided.py'

dataset_type = 'CIFAR10'
data_root = 'data/cifar10/'
model = dict(
    data_preprocessor=dict(num_classes=10, mean=[125.307, 122.961, 113.8575],
                           std=[51.5865, 50.847, 51.255]),
    head=dict(head=dict(num_classes=10)))
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
