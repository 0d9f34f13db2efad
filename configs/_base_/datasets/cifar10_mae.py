# CIFAR-10 for pretraining: the `train` split of the shared archive (files
# 0000-4499 of each class; 4500-4999 = `val`, kept for evaluation and never
# read here), 32 px, the demo's augmentation.  Prepare once:
#   mkdir -p data/cifar10
#   tar xzf ../shared/data/cifar10/train.tar.gz -C data/cifar10
#   python tools/dataset_converters/cifar10_split.py data/cifar10
# which gives data/cifar10/train/<class>/NNNN.jpg and data/cifar10/meta/
# {train,val}.txt.
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
