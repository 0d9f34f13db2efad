# CL-MAE's optimizers (CLMAE.train_step): the MAE and the masking module
# each get an AdamW (0.9, 0.95), weight decay 0.05, none on norms, biases
# and the MAE's tokens, at the SAME learning rate: the official code trains
# both parts with one AdamW (requires_grad toggled between the two steps).
# A config setting the lr sets it in both, e.g.
#   optim_wrapper = dict(mae=dict(optimizer=dict(lr=lr)),
#                        masker=dict(optimizer=dict(lr=lr)))
# and gives both parts the same schedule (its pieces: warmup_cosine.py):
#   param_scheduler = dict(mae=schedule, masker=schedule)
_base_ = ['./mae_no_decay.py', './warmup_cosine.py']
cl_mae_adamw = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=_base_.mae_no_decay)
optim_wrapper = dict(
    constructor='PartsOptimWrapperConstructor',
    mae=cl_mae_adamw,
    masker=cl_mae_adamw)
