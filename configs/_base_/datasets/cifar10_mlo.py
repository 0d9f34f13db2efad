# CIFAR-10 for all three levels of MLO-MAE: the `train` split of the shared
# archive (files 0000-4499 per class, see cifar10_mae.py for the one-time
# preparation) is the MAE data and, split 80/20 per class with seed 0, the
# labelled data of levels 2 and 3.  `val` (files 4500-4999) is held out for
# reporting: the loop stops with an error if the labelled split shares a
# file with it.
_base_ = ['./cifar10_mae.py', './mlo_labelled_split.py']
train_cfg = dict(
    labelled_split=dict(
        dataset=dict(
            data_root='data/cifar10',
            data_prefix='train',
            ann_file='meta/train.txt')),
    train_split_dataloader=dict(batch_size=128, num_workers=4),
    val_split_dataloader=dict(batch_size=128, num_workers=4),
    heldout_datasets=[
        dict(
            type='ImageFolder',
            data_root='data/cifar10',
            data_prefix='train',
            ann_file='meta/val.txt',
            pipeline=[])
    ])
