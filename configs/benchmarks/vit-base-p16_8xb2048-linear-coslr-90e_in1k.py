# Linear probe of a ViT-B/16 pretrained by this package (any masking method:
# MaskedMAE, CLMAE, ... checkpoints, or mmpretrain's MAE) on ImageNet-1k:
# mmpretrain's MAE recipe unchanged (frozen backbone, class token after the
# final norm, BatchNorm without affine, LARS lr 6.4 = 0.1 x 16384 / 256,
# 90 epochs), the backbone's weights read from the checkpoint's
# `backbone.*` keys.
#   bash tools/dist_train.sh configs/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/mae/epoch_400.pth
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
    '../_base_/mmpretrain_recipe_fail_safe.py'
]
# this package's import, scope and fail-safe hooks (docs/fail_safe.md)
default_hooks = _base_.fail_safe_hooks
default_scope = 'mlmask_mm'

# the pretraining checkpoint (required; tools/train.py refuses an empty one)
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))

# the checkpoint must cover the (frozen) backbone whole: StrictPretrainedHook
# stops before the first iteration otherwise
custom_hooks = [dict(type='mlmask_mm.StrictPretrainedHook')]
