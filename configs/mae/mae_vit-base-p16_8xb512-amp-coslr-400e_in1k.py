# mmpretrain's own ViT-B/16 MAE recipe on ImageNet-1k (400 epochs, 8x512,
# AMP), with this package's model: the same backbone/decoder/head, the mask
# now coming from a masker.  Swap the masker with one line, e.g.
#   --cfg-options model.masker.type=BlockMasker
_base_ = [
    'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
    '../_base_/mmpretrain_recipe_fail_safe.py'
]
# this package's import, scope and fail-safe hooks (docs/fail_safe.md)
default_hooks = _base_.fail_safe_hooks
default_scope = 'mlmask_mm'

model = dict(
    _scope_='mlmask_mm',
    type='MaskedMAE',
    # the fast path (docs/benchmarks.md): fused blocks with mmpretrain's
    # keys, each compiled whole on a GPU; 'MaskableViT'/'MAEPretrainDecoder'
    # are the eager mmpretrain modules
    backbone=dict(type='FastMAEViT'),
    neck=dict(type='FastMAEPretrainDecoder'),
    masker=dict(type='RandomMasker', mask_ratio=0.75),
    compile=False)  # per-block compile: not with the fast modules
# bf16 (optim_wrapper.dtype='bfloat16') then runs without a loss scaler
optim_wrapper = dict(type='BF16AmpOptimWrapper', optimizer=dict(fused=True))
