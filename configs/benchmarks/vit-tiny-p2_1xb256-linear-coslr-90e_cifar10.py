# Linear probe of a ViT-tiny (2 px patches, 32 px images: the architecture
# of configs/cl_mae/ and configs/sg_mae/ *_cifar10.py) on CIFAR-10, with
# mmpretrain's MAE linear-probe recipe scaled to one GPU: frozen backbone,
# class token after the final norm, BatchNorm without affine, LARS
# lr = 0.1 x 256 / 256, 10 warm-up + 80 cosine epochs.
#
# Data: trains on the project's `train` split (files 0000-4499 of each class)
# and reports on `val` (files 4500-4999, never used for pretraining or
# selection), prepared as in configs/_base_/datasets/cifar10_mae.py
# (docs/data.md).
# Run:
#   python tools/train.py configs/benchmarks/vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/cl-mae_vit-tiny-p2_cifar10/epoch_200.pth
#   python tools/test.py configs/benchmarks/vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py \
#       work_dirs/vit-tiny-p2_1xb256-linear-coslr-90e_cifar10/epoch_90.pth
# A checkpoint with 4 px patches (configs/mae/mae_vit-tiny-p4_demo.py):
#   --cfg-options model.backbone.patch_size=4
# The ImageNet-1k config (mmpretrain's recipe + this package's import, scope
# and fail-safe hooks) with the CIFAR-10 data and a ViT-tiny/2.
_base_ = [
    './vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
    '../_base_/datasets/cifar10_cls.py'
]
img_size = 32
embed_dims = 192
data_preprocessor = _base_.cifar10_data_preprocessor
train_pipeline = _base_.cifar10_train_pipeline
test_pipeline = _base_.cifar10_test_pipeline
train_dataloader = _base_.cifar10_train_dataloader
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
        frozen_stages=12,
        # the pretraining checkpoint (required)
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    neck=dict(input_features=embed_dims),
    head=dict(num_classes=10, in_channels=embed_dims))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='LARS', lr=0.1, weight_decay=0.0, momentum=0.9))
auto_scale_lr = dict(base_batch_size=256)

# the checkpoint must cover the (frozen) backbone whole: StrictPretrainedHook
# stops before the first iteration otherwise
custom_hooks = [dict(type='mlmask_mm.StrictPretrainedHook')]
