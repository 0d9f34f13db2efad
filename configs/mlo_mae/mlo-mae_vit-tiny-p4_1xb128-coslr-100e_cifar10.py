# MLO-MAE, ViT-tiny (patch 4, 64 patches) on 32 px CIFAR-10: a small config
# for real runs on one GPU.  Same data and splits as
# mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10.py (`train` split for all
# three levels, 80/20 per class for levels 2 and 3, `val` held out for the
# stage-II evaluation every epoch); batch 128, 100 epochs, two unrolled MAE
# steps.
#   python tools/train.py configs/mlo_mae/mlo-mae_vit-tiny-p4_1xb128-coslr-100e_cifar10.py
_base_ = [
    '../_base_/models/mlo-mae_vit-tiny-p4.py',
    '../_base_/datasets/cifar10_mlo.py',
    '../_base_/schedules/mlo-mae_adamw.py',
    '../_base_/default_runtime.py',
]
max_epochs = 100
warmup_epochs = 10
train_dataloader = dict(batch_size=128)
# θ1 at the tiny MAE's lr (configs/_base_/schedules/adamw_iters.py)
optim_wrapper = dict(
    mae=dict(optimizer=dict(lr=1.5e-3)),
    head=dict(optimizer=dict(lr=1e-3)),
    masker=dict(optimizer=dict(lr=1e-3)))
_schedule = [
    dict(_base_.warmup_by_epoch, start_factor=1e-3, end=warmup_epochs),
    dict(_base_.cosine_by_epoch, T_max=max_epochs - warmup_epochs,
         eta_min=1e-5, begin=warmup_epochs, end=max_epochs)
]
param_scheduler = dict(mae=_schedule, head=_schedule, masker=_schedule)
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
