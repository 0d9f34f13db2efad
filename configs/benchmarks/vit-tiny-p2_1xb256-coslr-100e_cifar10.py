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
# The ImageNet-1k config (mmpretrain's recipe + this package's import, scope
# and fail-safe hooks) with the CIFAR-10 data and a ViT-tiny/2.
_base_ = [
    './vit-base-p16_8xb128-coslr-100e_in1k.py',
    '../_base_/datasets/cifar10_cls.py'
]
img_size = 32
embed_dims = 192
data_preprocessor = _base_.cifar10_data_preprocessor
# the recipe's augmentation: RandAugment, random erasing
mean, std = _base_.cifar10_mean, _base_.cifar10_std
train_pipeline = _base_.cifar10_train_pipeline[:-1] + [
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
test_pipeline = _base_.cifar10_test_pipeline
train_dataloader = dict(
    _base_.cifar10_train_dataloader,
    dataset=dict(_base_.cifar10_train_dataloader.dataset,
                 pipeline=train_pipeline))
val_dataloader = _base_.cifar10_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.cifar10_evaluator
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

# the checkpoint must cover the backbone (StrictPretrainedHook, before the
# first iteration): only the pooled-feature norm ln2 starts from its init;
# the encoder's final norm ln1 is not used with global pooling
custom_hooks = [
    dict(type='mlmask_mm.StrictPretrainedHook',
         new_params=[r'ln2\.(weight|bias)'],
         ignored_keys=[r'ln1\.(weight|bias)'])
]
