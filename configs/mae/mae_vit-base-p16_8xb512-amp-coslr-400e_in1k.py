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
    backbone=dict(type='MaskableViT'),
    masker=dict(type='RandomMasker', mask_ratio=0.75),
    # compile=True compiles the blocks in place: measured slower than eager
    # on an H200 (docs/benchmarks.md); bf16: optim_wrapper.dtype='bfloat16'
    compile=False)
