# mmpretrain's own ViT-B/16 MAE recipe on ImageNet-1k (400 epochs, 8x512,
# fp16 AMP with a dynamic loss scale), with this package's model: the same
# backbone, decoder and head (mmpretrain's eager modules), the mask now
# coming from a masker.  Swap the masker with one line, e.g.
#   --cfg-options model.masker.type=BlockMasker
# Own images (class folders or a flat folder) instead of ImageNet:
#   --cfg-options train_dataloader.dataset.data_root=DIR \
#                 train_dataloader.dataset.split=None
# bf16, the fast path and fewer GPUs: docs/get_started.md.
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
    masker=dict(type='RandomMasker', mask_ratio=0.75))

# mmpretrain's ImageNet data (data/imagenet/train, meta/train.txt when it
# is there: the same images in the same order) read by this package's
# ImageFolder, which also reads a class-folder tree with any number of
# classes or a flat folder of images (with_label='auto'; docs/data.md)
train_dataloader = dict(
    dataset=dict(type='mlmask_mm.ImageFolder', with_label='auto'))
