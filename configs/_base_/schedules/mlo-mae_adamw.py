# MLO-MAE's three optimizers (paper: AdamW (0.9, 0.95) at every level):
# 'mae' = encoder + decoder (θ1), 'head' = downstream head (θ2), 'masker' =
# masking network (φ).  Leaf configs set the learning rates and one scheduler
# list per part: param_scheduler = dict(mae=[...], head=[...], masker=[...]).
# (warm-up + cosine pieces: warmup_cosine.py)
# Mixed precision: model.amp='bf16' (not AmpOptimWrapper / --amp).
_base_ = ['./mae_no_decay.py', './warmup_cosine.py']
_no_decay = _base_.mae_no_decay
optim_wrapper = dict(
    constructor='PartsOptimWrapperConstructor',
    mae=dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamW', lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05),
        paramwise_cfg=_no_decay),
    head=dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)),
    # eps far below the hypergradient's per-element size (logged as
    # hypergrad_rms; ~1e-3 on the test ViTs): at PyTorch's 1e-8 AdamW damps
    # the elements whose gradient is near it (docs/mlo_mae.md)
    masker=dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05,
            eps=1e-12)))
# distributed runs: outer_step averages every gradient itself (DDP would
# only sync gradients of backward() after its own forward())
model_wrapper_cfg = dict(type='PartsDataParallel')
