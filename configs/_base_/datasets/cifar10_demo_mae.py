# The embedded demo dataset: 100 CIFAR-10 training images per class
# (files 0000-0099 of the `train` split), in data/cifar10_demo/<class>/.
# Point data_root at any class-folder tree to use other images, e.g.
#   --cfg-options train_dataloader.dataset.data_root=/path/to/folders
data_root = 'data/cifar10_demo'
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[125.3, 123.0, 113.9],
    std=[63.0, 62.1, 66.7],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=32,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]

train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageFolder', data_root=data_root, pipeline=train_pipeline))
