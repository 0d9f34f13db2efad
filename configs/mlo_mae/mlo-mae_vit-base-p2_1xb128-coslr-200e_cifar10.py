# MLO-MAE as published on CIFAR-10 (paper §4, App. B; the official CIFAR
# script): ViT-B with 2 px patches on 32 px images (256 patches), mask ratio
# 0.75, the paper's masking network (256·768 -> 512 -> 256), batch 128 at
# every level, two MAE steps per outer iteration (each on its own batch),
# the masking network updated every outer iteration, AdamW (0.9, 0.95)
# everywhere, no warm-up, cosine schedules as the official run steps them.
# Length: the official run, 200 "epochs" x 313 outer iterations = 62,600
# outer iterations = 125,200 MAE steps.  Hypergradient: ξ1 = ξ2 = 1 (the
# official weighting), the last MAE step differentiated (as betty's darts).
# Stage II: the level-2 head's top-1/top-5 on `val` (files 4500-4999 of the
# training archive, held out from all three levels) every 10 official
# epochs and at the end: the paper's linear-probe number (docs/mlo_mae.md,
# which lists every difference to the paper and the official code).
# Options (--cfg-options): the official head and position embedding,
#   model.feature=cls model.learnable_pos_embed=True \
#   model.downstream_head.type=MLOClsHead model.downstream_head.dropout=0.1
# Data: data/cifar10, prepared as in
# ../_base_/datasets/cifar10_mae.py.
#   python tools/train.py configs/mlo_mae/mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10.py
_base_ = [
    '../_base_/models/mlo-mae_vit-base-p2.py',
    '../_base_/datasets/cifar10_mlo.py',
    '../_base_/schedules/mlo-mae_adamw.py',
    '../_base_/default_runtime.py',
]
official_epoch = 313  # outer iterations: int(40,000 / 128) + 1 (official)
max_iters = 200 * official_epoch  # 62,600 outer = 125,200 MAE steps
model = dict(amp='bf16', hypergrad=dict(unroll_steps=2, unroll='last'))
train_dataloader = dict(batch_size=128)  # per MAE step (the loop reads 2x)
optim_wrapper = dict(
    # official CIFAR script: lr 1e-4 (absolute), weight decay 1e-3 without
    # decay for biases and norms
    mae=dict(optimizer=dict(lr=1e-4, weight_decay=1e-3)),
    # AdamW's default weight decay 0.01 (the script's 1e-3 arguments for
    # these two optimizers are never passed to them)
    head=dict(optimizer=dict(lr=1e-3, weight_decay=0.01)),
    masker=dict(optimizer=dict(lr=1e-3, weight_decay=0.01)))
# the official schedulers: cosine over T_max = 125,200 steps each, stepped
# at every step of their own level -- the MAE's 125,200 times (to 0), the
# head's and the masker's once per outer iteration, 62,600 times, so they
# end at half their learning rate.  Here every scheduler steps once per
# outer iteration.
param_scheduler = dict(
    mae=[dict(type='CosineAnnealingLR', by_epoch=False, begin=0,
              end=max_iters, T_max=max_iters, eta_min=0.)],
    head=[dict(type='CosineAnnealingLR', by_epoch=False, begin=0,
               end=max_iters, T_max=2 * max_iters, eta_min=0.)],
    masker=[dict(type='CosineAnnealingLR', by_epoch=False, begin=0,
                 end=max_iters, T_max=2 * max_iters, eta_min=0.)])
train_cfg = dict(max_iters=max_iters, val_interval=10 * official_epoch)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10 * official_epoch,
                    by_epoch=False, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
