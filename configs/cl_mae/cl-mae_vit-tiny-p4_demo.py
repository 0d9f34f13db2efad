# CL-MAE on the embedded CIFAR-10 subset (data/cifar10_demo): a ViT-tiny
# MAE and a small masking module, 300 iterations of batch 32 on CPU (5 min
# 15 s on a shared 2-core machine).
#   python tools/train.py configs/cl_mae/cl-mae_vit-tiny-p4_demo.py \
#       --work-dir work_dirs/cl_mae_demo
# The module's masks (2nd column: masked input; 5th: its scores, red =
# kept) are saved every 50 iterations and at the end, masks_iter_50.png
# (partner phase, c ≈ +0.7) ... masks_final.png (adversary, c = −1): the
# easy-to-hard shift of the curriculum.  Any checkpoint can be rendered
# again with tools/visualization/visualize_masks.py.
_base_ = ['../mae/mae_vit-tiny-p4_demo.py']

max_iters = 300
warmup_iters = 30
# batch 32 (the MAE demo: 64): the module step costs ~3x the MAE step
train_dataloader = dict(batch_size=32)
model = dict(
    type='CLMAE',
    # the published module has 5 blocks at the encoder's width; 2 keep the
    # CPU demo short
    masker=dict(
        _delete_=True,
        type='CurriculumMasker',
        embed_dims=192,
        num_layers=2,
        num_heads=3,
        mask_ratio=0.75),
    masker_update_interval=1,
    lambda_bin=1.0,
    lambda_kl=0.1,
    lambda_div=2.0)

# one optimizer per step (CLMAE.train_step): 'mae' and 'masker'
_adamw = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'masker.token': dict(decay_mult=0.),
        }))
# the module at a tenth of the MAE's lr: with the short warm-up of the demo
# a higher one drives its sigmoid scores into saturation (exactly 0 or 1,
# no gradient) within ~50 iterations and the masks stop changing
optim_wrapper = dict(
    _delete_=True,
    constructor='PartsOptimWrapperConstructor',
    mae=_adamw,
    masker=dict(_adamw, optimizer=dict(_adamw['optimizer'], lr=1.5e-4)))
_schedule = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters,
         end=max_iters, eta_min=1e-5)
]
param_scheduler = dict(_delete_=True, mae=_schedule, masker=_schedule)
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
# distributed runs (tools/dist_train.sh): CL-MAE's own train_step averages
# the gradients (MMDistributedDataParallel would skip the module step)
model_wrapper_cfg = dict(type='PartsDataParallel')
