# MLO-MAE, ViT-B with 2 px patches on 32 px CIFAR-10 (256 patches), the
# paper's CIFAR settings: mask ratio 0.75, AdamW (0.9, 0.95) at every level,
# batch 128, 200 epochs, two unrolled MAE steps per outer iteration (each on
# its own batch), the masking network updated every iteration; levels 2 and
# 3 on a stratified, seeded 80/20 split of the `train` split (files
# 0000-4499 per class); `val` (4500-4999) held out for reporting.
# Data: ../shared/data/cifar10, prepared as in
# ../_base_/datasets/cifar10_mae.py.
#   python tools/train.py configs/mlo_mae/vitb-p2_cifar10.py
_base_ = [
    '../_base_/models/mlo-mae_vit-base-p2.py',
    '../_base_/datasets/cifar10_mlo.py',
    '../_base_/schedules/mlo-mae_adamw.py',
    '../_base_/default_runtime.py',
]
max_epochs = 200
warmup_epochs = 20
model = dict(amp='bf16')
train_dataloader = dict(batch_size=128)
# lr: θ1 1.5e-4 · 128/256, θ2 and φ 1e-3 (design note)
optim_wrapper = dict(
    mae=dict(optimizer=dict(lr=1.5e-4 * 128 / 256)),
    head=dict(optimizer=dict(lr=1e-3)),
    masker=dict(optimizer=dict(lr=1e-3)))
_schedule = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         eta_min=1e-6, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True)
]
param_scheduler = dict(mae=_schedule, head=_schedule, masker=_schedule)
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
