# CIFAR-10 for MLO-MAE, the official code's augmentation (RandomCrop 32 with
# 4 px padding + horizontal flip, CIFAR mean/std) at all three levels:
# - level 1 (MAE): the `train` split of data/cifar10 (files 0000-4499
#   per class; see cifar10_mae.py for the one-time preparation);
# - levels 2 and 3: the same images split 80/20 per class, seed 0
#   (work_dir/mlo_split/);
# - stage-II evaluation (val_dataloader): `val`, files 4500-4999 of the
#   training images, held out from everything else (the loop stops with an
#   error if levels 2/3 share an image with it).  The official test set only
#   when named: val_dataloader.dataset=<a CIFAR-10 test dataset>.
_base_ = ['./cifar10_mae.py', './mlo_labelled_split.py']
_augment = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs')
]
_test = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
_cifar10 = dict(
    type='ImageFolder',
    data_root='data/cifar10',
    data_prefix='train',
    ann_file='meta/train.txt',  # files 0000-4499 of each class
    with_label=True,
    metainfo=dict(classes={{_base_.CIFAR10_CLASSES}}))
train_dataloader = dict(
    batch_size=128, dataset=dict(pipeline=_augment))
train_cfg = dict(
    labelled_split=dict(dataset=dict(_cifar10, pipeline=_augment)),
    train_split_dataloader=dict(batch_size=128, num_workers=4),
    val_split_dataloader=dict(batch_size=128, num_workers=4))
val_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(_cifar10, ann_file='meta/val.txt', pipeline=_test))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
val_cfg = dict()
