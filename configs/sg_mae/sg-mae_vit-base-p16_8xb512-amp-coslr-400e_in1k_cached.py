# Self-Guided MAE, ViT-B/16 on ImageNet-1k, 400 epochs, with cached informed
# masks: each rank computes the relevance maps (14 x 14, float16) of its
# share of the 1.28 M training images on the whole images when informed
# masking starts and every 10 epochs, all ranks gather the full cache
# (about 0.5 GB of host memory per rank), and each batch reads it through
# its samples' crop boxes and flips.  Not saved in checkpoints: a resumed
# run recomputes it.  See docs/self_guided_mae.md.
_base_ = ['./sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py']

model = dict(masker=dict(maskers=[
    dict(type='RandomMasker', mask_ratio=0.75),
    dict(type='SelfGuidedMasker', mode='cached', mask_ratio=0.75,
         feature_layer=-2, hint_ratio=0.05, hint_mode='uniform')
]))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RecordedRandomResizedCrop', scale=224,
         crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'flip', 'flip_direction', 'crop_box'))
]))
custom_hooks = [
    dict(type='SelfGuidedStartHook', start=None, by_epoch=True, interval=1,
         num_images=256, hint_ratio=(0.1, 0.02)),
    dict(type='SelfGuidedCacheHook', interval=10, by_epoch=True),
]
