# Self-Guided MAE on CIFAR-10 with cached informed masks: relevance maps of
# all 45k training images, computed on the whole images when informed
# masking starts and every 10 epochs, read per batch through each sample's
# crop box and flip (docs/self_guided_mae.md, docs/benchmarks.md).
_base_ = ['./sg-mae_vit-tiny-p2_cifar10.py']

model = dict(masker=dict(maskers=[
    dict(type='RandomMasker', mask_ratio=0.75),
    dict(type='SelfGuidedMasker', mode='cached', mask_ratio=0.75,
         feature_layer=-2, hint_ratio=0.05, hint_mode='uniform')
]))
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
    dict(type='SelfGuidedStartHook', start=None, by_epoch=True, interval=5,
         num_images=256, hint_ratio=(0.1, 0.02)),
    dict(type='SelfGuidedCacheHook', interval=10, by_epoch=True),
]
