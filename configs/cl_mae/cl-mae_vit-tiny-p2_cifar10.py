# CL-MAE, ViT-tiny with 2 px patches (16 x 16 = 256 patches) on CIFAR-10,
# one GPU, batch 256, 200 epochs (warm-up 20).
#
# Data: the `train` split of data/cifar10, prepared as described in
# ../_base_/datasets/cifar10_mae.py.
_base_ = [
    '../_base_/models/mae_vit-tiny-p4.py',
    '../_base_/datasets/cifar10_mae.py',
    '../_base_/schedules/cl-mae_adamw.py',
    '../_base_/default_runtime.py',
    './_base_/cl_mae_published.py',
]
img_size = 32
patch_size = 2
num_patches = (img_size // patch_size)**2
mask_ratio = 0.75
lr = 1e-3 * 256 / 256  # base lr 1e-3 x batch / 256, both parts (published)

# the published objective (docs/cl_mae.md): official head, λ 1.0 / 0.1 /
# 2.0, L_kl summed over the batch, bump height σ√(2π), unnormalised targets
model = dict(
    _base_.cl_objective,
    type='CLMAE',
    backbone=dict(img_size=img_size, patch_size=patch_size,
                  mask_ratio=mask_ratio),
    neck=dict(num_patches=num_patches, patch_size=patch_size),
    head=dict(patch_size=patch_size, norm_pix=False),
    # published module: 5 blocks at the encoder's width, 4 heads,
    # Linear(D, L) on its learnable token
    masker=dict(_base_.cl_masker, _delete_=True, num_patches=num_patches,
                embed_dims=192, mask_ratio=mask_ratio),
    bin_sigma=0.12,
    div_kappa=0.1)

# AMP (the official code trains under autocast); one lr for both parts
_amp = dict(type='AmpOptimWrapper', loss_scale='dynamic',
            optimizer=dict(lr=lr))
optim_wrapper = dict(mae=_amp, masker=_amp)

max_epochs = 200
warmup_epochs = 20
_schedule = [
    dict(_base_.warmup_by_epoch, end=warmup_epochs),
    dict(_base_.cosine_by_epoch, T_max=max_epochs - warmup_epochs,
         eta_min=1e-6, begin=warmup_epochs, end=max_epochs)
]
param_scheduler = dict(mae=_schedule, masker=_schedule)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=20, max_keep_ckpts=3),
    logger=dict(type='LoggerHook', interval=50))
custom_hooks = [
    # c(e): +1 (partner) -> -1 (adversary) once per epoch, 0 skipped (the
    # published schedule)
    dict(_base_.cl_curriculum_hook, by_epoch=True),
    dict(type='MaskVisualizationHook', num_images=8, interval=10000),
]
