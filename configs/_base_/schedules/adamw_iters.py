# AdamW as in MAE (betas 0.9/0.95, wd 0.05, no decay on norms/biases/tokens),
# warm-up then cosine, counted in iterations.
_base_ = ['./mae_no_decay.py']
max_iters = 400
warmup_iters = 40
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=_base_.mae_no_decay)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters,
         end=max_iters, eta_min=1e-5)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
