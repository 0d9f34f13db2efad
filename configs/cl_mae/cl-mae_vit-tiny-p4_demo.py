# CL-MAE on the embedded CIFAR-10 subset (data/cifar10_demo): a ViT-tiny
# MAE and the published objective and scoring head with a 2-block module,
# 300 iterations of batch 32 on CPU.
#   python tools/train.py configs/cl_mae/cl-mae_vit-tiny-p4_demo.py \
#       --work-dir work_dirs/cl_mae_demo
# The module's masks (2nd column: masked input; 5th: its scores, red =
# kept) are saved every 50 iterations and at the end, masks_iter_50.png
# (partner phase, c ≈ +0.7) ... masks_final.png (adversary, c = −1): the
# easy-to-hard shift of the curriculum.  Any checkpoint can be rendered
# again with tools/visualization/visualize_masks.py.
_base_ = [
    '../_base_/models/mae_vit-tiny-p4.py',
    '../_base_/datasets/cifar10_demo_mae.py',
    '../_base_/schedules/cl-mae_adamw.py',
    '../_base_/default_runtime.py',
    './_base_/cl_mae_published.py',
]

img_size = 32
patch_size = 4
mask_ratio = 0.75
max_iters = 300
warmup_iters = 30
lr = 1.5e-3  # the MAE demo's; one lr for both parts, as published

# batch 32 (the MAE demo: 64): the module step costs ~3x the MAE step
train_dataloader = dict(batch_size=32)
model = dict(
    _base_.cl_objective,
    type='CLMAE',
    # official targets: pixels normalised by the dataset mean/std, not
    # per patch
    head=dict(norm_pix=False),
    # the published module (official MaskingNet: Linear(D, L) on its token,
    # 4 heads) with 2 blocks instead of 5 to keep the CPU demo short
    masker=dict(_base_.cl_masker, _delete_=True,
                num_patches=(img_size // patch_size)**2, embed_dims=192,
                num_layers=2, mask_ratio=mask_ratio))

optim_wrapper = dict(
    mae=dict(optimizer=dict(lr=lr)), masker=dict(optimizer=dict(lr=lr)))
_schedule = [
    dict(_base_.warmup_by_iter, end=warmup_iters),
    dict(_base_.cosine_by_iter, begin=warmup_iters, end=max_iters)
]
param_scheduler = dict(mae=_schedule, masker=_schedule)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False,
                    max_keep_ckpts=3))
custom_hooks = [
    # c(t): +1 (partner) -> -1 (adversary), linear, 0 skipped (published)
    _base_.cl_curriculum_hook,
    dict(type='MaskVisualizationHook', num_images=8, interval=50),
]
log_processor = dict(by_epoch=False)
