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
    type='CLMAE',
    # official targets: pixels normalised by the dataset mean/std, not
    # per patch
    head=dict(norm_pix=False),
    # the published module (official MaskingNet: Linear(D, L) on its token,
    # 4 heads) with 2 blocks instead of 5 to keep the CPU demo short
    masker=dict(
        _delete_=True,
        type='CurriculumMasker',
        head='token',
        num_patches=(img_size // patch_size)**2,
        embed_dims=192,
        num_layers=2,
        num_heads=4,
        mask_ratio=mask_ratio),
    masker_update_interval=1,
    lambda_bin=1.0,
    lambda_kl=0.1,
    lambda_div=2.0,
    kl_reduction='sum')

optim_wrapper = dict(
    mae=dict(optimizer=dict(lr=lr)), masker=dict(optimizer=dict(lr=lr)))
_schedule = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters,
         end=max_iters, eta_min=1e-5)
]
param_scheduler = dict(mae=_schedule, masker=_schedule)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False,
                    max_keep_ckpts=3))
custom_hooks = [
    # c(t): +1 (partner) -> -1 (adversary), linear, 0 skipped (published)
    dict(type='CurriculumHook', start=1.0, end=-1.0, shape='linear',
         skip_zero=True),
    dict(type='MaskVisualizationHook', num_images=8, interval=50),
]
log_processor = dict(by_epoch=False)
# distributed runs (tools/dist_train.sh): CL-MAE's own train_step averages
# the gradients (MMDistributedDataParallel would skip the module step)
model_wrapper_cfg = dict(type='PartsDataParallel')
