# Fine-tuning of a ViT-tiny (2 px patches, 32 px images: the architecture
# of configs/cl_mae/ and configs/sg_mae/ *_cifar10.py) on CIFAR-10 with
# mmpretrain's MAE fine-tuning recipe scaled to one GPU: global-pooled patch
# tokens, drop path 0.1, AdamW lr = 2e-3 x 256 / 1024 with layer-wise lr
# decay 0.65, RandAugment, random erasing, Mixup 0.8 / CutMix 1.0, label
# smoothing 0.1, 5 warm-up + 95 cosine epochs.
#
# Data: trains on `train` (files 0000-4499 of each class), reports on `val`
# (files 4500-4999), see vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py.
#   python tools/train.py configs/benchmarks/vit-tiny-p2_1xb256-coslr-100e_cifar10.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/cl-mae_vit-tiny-p2_cifar10/epoch_200.pth
_base_ = ['mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py']
custom_imports = dict(imports=['mlmask_mm'], allow_failed_imports=False)
default_scope = 'mlmask_mm'

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')
data_root = 'data/cifar10'
img_size = 32
embed_dims = 192
mean = [125.3, 123.0, 113.9]
std = [63.0, 62.1, 66.7]

data_preprocessor = dict(num_classes=10, mean=mean, std=std, to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in mean[::-1]],
                     interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=mean[::-1],  # BGR, as the images are loaded
        fill_std=std[::-1]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    _delete_=True,
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='ImageFolder',
        data_root=data_root,
        data_prefix='train',
        ann_file='meta/train.txt',  # files 0000-4499 of each class
        with_label=True,
        metainfo=dict(classes=CIFAR10_CLASSES),
        pipeline=train_pipeline))
val_dataloader = dict(
    _delete_=True,
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ImageFolder',
        data_root=data_root,
        data_prefix='train',  # the val files live in the same folders
        ann_file='meta/val.txt',  # files 4500-4999 of each class
        with_label=True,
        metainfo=dict(classes=CIFAR10_CLASSES),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

model = dict(
    backbone=dict(
        # ViT-tiny: 12 blocks of width 192, 3 heads, MLP 768 (the
        # architecture of configs/_base_/models/mae_vit-tiny-p4.py)
        arch='deit-tiny',
        img_size=img_size,
        patch_size=2,
        # the pretraining checkpoint (required)
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    head=dict(num_classes=10, in_channels=embed_dims))

# lr = 2e-3 x 256 / 1024 (mmpretrain's recipe: 2e-3 for 8 x 128 images)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
auto_scale_lr = dict(base_batch_size=256)
