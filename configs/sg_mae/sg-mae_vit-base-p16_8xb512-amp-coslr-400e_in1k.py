# Self-Guided MAE, ViT-B/16 on ImageNet-1k, 400 epochs (paper setting), on
# mmpretrain's MAE recipe.  Informed masking starts when the last decoder
# layer's exploitation rates satisfy R_{M->O} >= R_{V->O} (checked every
# epoch; the paper saw ~epoch 50), or set `custom_hooks[0].start=N`.
_base_ = ['../mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py']

model = dict(
    masker=dict(
        _delete_=True,
        type='CompositeMasker',
        mode='switch',
        maskers=[
            dict(type='RandomMasker', mask_ratio=0.75),
            dict(type='SelfGuidedMasker', mask_ratio=0.75, feature_layer=-2,
                 hint_ratio=0.05, hint_mode='uniform')
        ]))
custom_hooks = [
    dict(type='SelfGuidedStartHook', start=None, by_epoch=True, interval=1,
         num_images=256, hint_ratio=(0.1, 0.02)),
]
