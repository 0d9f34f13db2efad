# CL-MAE (Madan et al., WACV 2024) on ImageNet-1k: ViT-B/16, 224 px, mask
# ratio 0.75, 8 GPUs x 256 images, AMP, 200 epochs (warm-up 40), the
# published objective (docs/cl_mae.md): the official masking module (5
# blocks at the encoder's width, 4 heads, Linear(D, L) on its learnable
# token), λ_bin 1.0 with the official bump height, λ_kl 0.1 with L_kl summed
# over the 256 images of each GPU, λ_div 2.0, targets not normalised per
# patch, one lr for both parts, c(t) linear from +1 to -1 skipping 0.
# Inherits configs/mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py
# (mmpretrain's MAE ViT-B recipe with this package's import, scope and
# fail-safe hooks).
#   bash tools/dist_train.sh \
#       configs/cl_mae/cl-mae_vit-base-p16_8xb256-amp-coslr-200e_in1k.py 8
_base_ = [
    '../mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
    '../_base_/schedules/mae_no_decay.py',
    '../_base_/schedules/warmup_cosine.py',
    './_base_/cl_mae_published.py',
]

mask_ratio = 0.75
model = dict(
    _base_.cl_objective,
    type='CLMAE',
    backbone=dict(mask_ratio=mask_ratio),
    head=dict(norm_pix=False),
    masker=dict(_base_.cl_masker, num_patches=(224 // 16)**2,
                embed_dims=768, mask_ratio=mask_ratio),
    # cost knobs (docs/cl_mae.md): the module step every n iterations, on
    # the first k images of the batch; published: n = 1, the whole batch
    masker_update_interval=1,
    masker_batch_size=None,
    bin_sigma=0.12,
    div_kappa=0.1)

train_dataloader = dict(batch_size=256)

# the MAE and the module at one lr (the official code has one AdamW):
# AdamW (0.9, 0.95), wd 0.05, lr = base lr 1e-3 x total batch / 256
# (configs/_base_/schedules/cl-mae_adamw.py, which this config cannot list
# beside mmpretrain's recipe: both define optim_wrapper)
_adamw = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=1e-3 * 2048 / 256, betas=(0.9, 0.95),
        weight_decay=0.05),
    paramwise_cfg=_base_.mae_no_decay)
optim_wrapper = dict(
    _delete_=True,
    constructor='PartsOptimWrapperConstructor',
    mae=_adamw,
    masker=_adamw)

max_epochs = 200
warmup_epochs = 40
_schedule = [
    dict(_base_.warmup_by_epoch, end=warmup_epochs),
    dict(_base_.cosine_by_epoch, T_max=max_epochs - warmup_epochs,
         begin=warmup_epochs, end=max_epochs)
]
param_scheduler = dict(_delete_=True, mae=_schedule, masker=_schedule)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)

# c(e): +1 -> -1 once per epoch, 0 skipped (the published schedule)
custom_hooks = [dict(_base_.cl_curriculum_hook, by_epoch=True)]
auto_scale_lr = dict(base_batch_size=2048)
