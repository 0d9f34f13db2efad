# MLO-MAE, ViT-B/16 on ImageNet-1k with the paper's settings: mask ratio
# 0.75, AdamW (0.9, 0.95) at every level, batch 256 (8 GPUs x 32), 50
# epochs, one unrolled MAE step (hypergrad.unroll_steps=1), the masking
# network updated every iteration; levels 2 and 3 on a stratified, seeded
# 80/20 split of ImageNet *train* (ImageNet-val only for reporting).
#   tools/dist_train.sh configs/mlo_mae/mlo-mae_vit-base-p16_8xb32-coslr-50e_in1k.py 8
# (short name: configs/mlo_mae/vitb_in1k.py)
# Knobs (--cfg-options): model.hypergrad.mode=finite_difference,
# model.hypergrad.unroll_steps=2, model.hypergrad.unroll=last,
# train_cfg.masker_update_interval=5, model.masker.type=MLOTokenMasker,
# model.amp=None (fp32); see docs/mlo_mae.md.  Stage-II evaluation is not
# configured here: ImageNet-val is for reporting only; hold out part of
# ImageNet train as in the CIFAR configs to measure the head.
# Data: data/imagenet/train (meta/train.txt when it is there) read by this
# package's ImageFolder at every level.  Own images: class folders only
# (levels 2 and 3 train a classifier; a flat folder is refused with an error
# saying so), e.g.
#   --cfg-options train_dataloader.dataset.data_root=DIR \
#     train_dataloader.dataset.split=None \
#     train_cfg.labelled_split.dataset.data_root=DIR \
#     train_cfg.labelled_split.dataset.split=None train_cfg.heldout_datasets=[]
# (docs/get_started.md).
_base_ = [
    '../_base_/models/mlo-mae_vit-base-p16.py',
    '../_base_/datasets/imagenet_mlo.py',
    '../_base_/schedules/mlo-mae_adamw.py',
    '../_base_/default_runtime.py',
]
max_epochs = 50
warmup_epochs = 5
model = dict(amp='bf16')  # finite differences always run in strict fp32
# lr: θ1 1.5e-4 · 256/256, θ2 5e-4, φ 5e-5 (paper; docs/mlo_mae.md)
optim_wrapper = dict(
    mae=dict(optimizer=dict(lr=1.5e-4)),
    head=dict(optimizer=dict(lr=5e-4)),
    masker=dict(optimizer=dict(lr=5e-5)))
_schedule = [
    dict(_base_.warmup_by_epoch, end=warmup_epochs),
    dict(_base_.cosine_by_epoch, T_max=max_epochs - warmup_epochs,
         eta_min=1e-6, begin=warmup_epochs, end=max_epochs)
]
param_scheduler = dict(mae=_schedule, head=_schedule, masker=_schedule)
train_dataloader = dict(
    batch_size=32,  # per GPU; 8 GPUs: 256
    dataset=dict(type='mlmask_mm.ImageFolder', with_label='auto'))
train_cfg = dict(
    max_epochs=max_epochs,
    labelled_split=dict(
        dataset=dict(
            type='mlmask_mm.ImageFolder',
            with_label=True,
            labels_needed_by="MLO-MAE's levels 2 and 3 (a classifier, and "
            'the masking network trained on its loss; MLO-MAE cannot '
            'pretrain on unlabelled images, MAE, Self-Guided MAE and CL-MAE '
            'can)')))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
