# Self-Guided MAE, ViT-B/16 on ImageNet-1k, 400 epochs (paper setting), on
# mmpretrain's MAE recipe.  Informed masks from the first crossing of the
# last decoder layer's exploitation rates (R_M->O >= R_V->O after being
# below; checked every epoch on 256 class-balanced images, not before epoch
# 10, at the latest at the paper's epoch 50), generated once for every
# training image (14 x 14 float16 maps, about 0.5 GB of host memory per
# rank, saved in the checkpoints).  See docs/self_guided_mae.md.
# The MAE config's data (ImageNet, or own images: class folders or a flat
# folder, --cfg-options train_dataloader.dataset.data_root=DIR
# train_dataloader.dataset.split=None; with class folders the measurement
# sample is class-balanced, with a flat folder a seeded one) and its eager
# modules and fp16 AMP step; fewer GPUs and the switch in epochs:
# docs/get_started.md.
_base_ = ['../mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
          './_base_/self_guided.py']

model = _base_.sg_model
model.update(_scope_='mlmask_mm', backbone=dict(type='MaskableViT'))
# the dataset is built in mmpretrain's scope (the recipe's _scope_), which
# does not see this package's transforms: name their scope
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='mlmask_mm.RecordedRandomResizedCrop', scale=224,
         crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    _base_.sg_pack_inputs,
]))
custom_hooks = [dict(type='SelfGuidedHook')]
