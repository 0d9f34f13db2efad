# AdamW as in MAE (betas 0.9/0.95, wd 0.05, no decay on norms/biases/tokens),
# warm-up then cosine, counted in iterations.
_base_ = ['./mae_no_decay.py', './warmup_cosine.py']
max_iters = 400
warmup_iters = 40
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=_base_.mae_no_decay)
param_scheduler = [
    dict(_base_.warmup_by_iter, end=warmup_iters),
    dict(_base_.cosine_by_iter, begin=warmup_iters, end=max_iters)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
