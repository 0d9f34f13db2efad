# CIFAR-10 classification for the benchmarks (fine-tune, linear probe):
# trains on the project's `train` split (files 0000-4499 of each class),
# reports on `val` (files 4500-4999, never used for pretraining or
# selection), 32 px, the normalisation of the CIFAR-10 pretraining configs.
# Prepare once as in cifar10_mae.py (docs/data.md).
#
# A config inherits this file beside an mmpretrain recipe, which already
# defines train_dataloader etc. (mmengine refuses a key in two bases): so the
# names here start with cifar10_ and the config takes them as
# `_base_.cifar10_...` (configs/benchmarks/vit-tiny-p2_*_cifar10.py).
cifar10_classes = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
cifar10_mean = [125.3, 123.0, 113.9]
cifar10_std = [63.0, 62.1, 66.7]
cifar10_data_preprocessor = dict(
    num_classes=10, mean=cifar10_mean, std=cifar10_std, to_rgb=True)
cifar10_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
cifar10_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=32, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
_split = dict(
    type='ImageFolder',
    data_root='data/cifar10',
    data_prefix='train',  # the val files live in the same folders
    with_label=True,
    metainfo=dict(classes=cifar10_classes))
cifar10_train_dataloader = dict(
    _delete_=True,  # replaces the recipe's ImageNet loader
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_split, ann_file='meta/train.txt',
                 pipeline=cifar10_train_pipeline))
cifar10_val_dataloader = dict(
    cifar10_train_dataloader,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_split, ann_file='meta/val.txt',
                 pipeline=cifar10_test_pipeline))
cifar10_evaluator = dict(type='Accuracy', topk=(1, 5))
