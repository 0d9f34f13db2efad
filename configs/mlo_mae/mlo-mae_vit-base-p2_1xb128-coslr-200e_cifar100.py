# MLO-MAE as published on CIFAR-100: the CIFAR-10 reproduction
# (mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10.py: model, length,
# optimizers, schedules, hypergradient) on mmpretrain's CIFAR100 dataset
# (the python pickles in data/cifar100/cifar-100-python, images in memory:
# the leakage check compares them by pixel content).
# Splits of the 50,000 training images (stratified, seeded):
# - 10 % per class (5,000) held out for the stage-II evaluation;
# - the other 90 % (45,000): level 1 (MAE) and, split 80/20 per class again,
#   levels 2 and 3.
# The official test set only when named:
#   --cfg-options val_dataloader.dataset.type=CIFAR100 \
#       val_dataloader.dataset.split=test  (and drop its LabelledSplit keys)
#   python tools/train.py configs/mlo_mae/mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar100.py
_base_ = ['./mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10.py']
# CIFAR-100 training-set statistics; the pickled images are RGB already
data_preprocessor = dict(
    mean=[129.3, 124.1, 112.4], std=[68.2, 65.4, 70.4], to_rgb=False)
model = dict(downstream_head=dict(num_classes=100))
_augment = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs')
]
_train = dict(
    type='CIFAR100', data_root='data/cifar100', split='train', download=False)
_heldout = dict(type='LabelledSplit', ratio=0.9, seed=1)
train_dataloader = dict(
    dataset=dict(
        _heldout, _delete_=True, part='train',
        dataset=dict(_train, pipeline=_augment)))
train_cfg = dict(
    labelled_split=dict(
        dataset=dict(
            _heldout, _delete_=True, part='train',
            dataset=dict(_train, pipeline=_augment))))
val_dataloader = dict(
    dataset=dict(
        _heldout, _delete_=True, part='val',
        dataset=dict(_train, pipeline=[dict(type='PackInputs')])))
