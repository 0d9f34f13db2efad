# Fine-tuning of a ViT-B/16 pretrained by this package (any masking method)
# on ImageNet-1k: mmpretrain's MAE recipe unchanged (global-pooled patch
# tokens, drop path 0.1, AdamW lr 2e-3 for 8 x 128 images with layer-wise lr
# decay 0.65, RandAugment, random erasing, Mixup 0.8 / CutMix 1.0, label
# smoothing 0.1, 100 epochs), the backbone's weights read from the
# checkpoint's `backbone.*` keys.
#   bash tools/dist_train.sh configs/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/mae/epoch_400.pth
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py',
    '../_base_/mmpretrain_recipe_fail_safe.py'
]
# this package's import, scope and fail-safe hooks (docs/fail_safe.md)
default_hooks = _base_.fail_safe_hooks
default_scope = 'mlmask_mm'

# the pretraining checkpoint (required; tools/train.py refuses an empty one)
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))

# the checkpoint must cover the backbone (StrictPretrainedHook, before the
# first iteration): only the pooled-feature norm ln2 starts from its init;
# the encoder's final norm ln1 is not used with global pooling
custom_hooks = [
    dict(type='mlmask_mm.StrictPretrainedHook',
         new_params=[r'ln2\.(weight|bias)'],
         ignored_keys=[r'ln1\.(weight|bias)'])
]
