# CIFAR-10 for pretraining: the `train` split (files 0000-4499 of each
# class; 4500-4999 = `val`, kept for evaluation and never read here), 32 px,
# the demo's augmentation.  Prepare once from the official archive
# (docs/data.md):
#   python tools/dataset_converters/cifar_to_folders.py \
#       cifar-10-python.tar.gz data/cifar10
# which gives data/cifar10/train/<class>/NNNN.png and data/cifar10/meta/
# {train,val,test}.txt.
_base_ = ['./cifar10_demo_mae.py']
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    dataset=dict(
        data_root='data/cifar10',
        data_prefix='train',
        ann_file='meta/train.txt',  # files 0000-4499 of each class only
        with_label=True,
        metainfo=dict(classes=CIFAR10_CLASSES)))
