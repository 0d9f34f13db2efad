# Self-Guided MAE, ViT-tiny with 2 px patches (256 patches) on CIFAR-10,
# one GPU, batch 256, 400 epochs (warm-up 40).  Informed masks from the
# first crossing of the exploitation rates (checked every epoch, not before
# epoch 10, at the latest at the paper's epoch 50), generated once then.
#
# Data: the `train` split of data/cifar10, prepared as described in
# ../_base_/datasets/cifar10_mae.py.
_base_ = [
    '../_base_/models/mae_vit-tiny-p4.py',
    '../_base_/datasets/cifar10_mae.py',
    '../_base_/default_runtime.py',
    './_base_/self_guided.py',
    '../_base_/schedules/mae_no_decay.py',
    '../_base_/schedules/warmup_cosine.py',
]
img_size, patch_size = 32, 2
model = _base_.sg_model
model.update(
    backbone=dict(img_size=img_size, patch_size=patch_size),
    neck=dict(num_patches=(img_size // patch_size)**2, patch_size=patch_size),
    head=dict(patch_size=patch_size))
train_dataloader = dict(dataset=dict(pipeline=_base_.sg_pipeline_32px))
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1.5e-4 * 256 / 256 * 4, betas=(0.9, 0.95),
                   weight_decay=0.05),
    paramwise_cfg=_base_.mae_no_decay)
param_scheduler = [
    dict(_base_.warmup_by_epoch, end=40),
    dict(_base_.cosine_by_epoch, T_max=360, eta_min=1e-6, begin=40, end=400)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=400)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=20, max_keep_ckpts=3),
    logger=dict(type='LoggerHook', interval=50))
custom_hooks = [dict(type='SelfGuidedHook')]
