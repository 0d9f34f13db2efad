# The Self-Guided MAE demo with cached informed masks: the relevance of
# every demo image is computed on the whole image when informed masking
# starts (iteration 150) and again every 50 iterations (about 3 epochs of
# the 1000 demo images), and each batch reads it through its samples' crop
# boxes and flips.  Costs about one plain MAE step per training step plus
# the refreshes (docs/benchmarks.md); see docs/self_guided_mae.md.
_base_ = ['./sg-mae_vit-tiny-p4_demo.py']

model = dict(masker=dict(maskers=[
    dict(type='RandomMasker', mask_ratio=0.75),
    dict(type='SelfGuidedMasker', mode='cached', mask_ratio=0.75,
         feature_layer=-2, hint_ratio=0.05, hint_mode='uniform')
]))
# the crop records its box, PackInputs keeps it (SELF_GUIDED_META_KEYS)
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='RecordedRandomResizedCrop', scale=32,
         crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'flip', 'flip_direction', 'crop_box'))
]))
custom_hooks = [
    dict(type='SelfGuidedStartHook', start=150, by_epoch=False, interval=50,
         num_images=32, hint_ratio=(0.1, 0.05)),
    dict(type='SelfGuidedCacheHook', interval=50, by_epoch=False),
    dict(type='MaskVisualizationHook', num_images=8, interval=100),
]
