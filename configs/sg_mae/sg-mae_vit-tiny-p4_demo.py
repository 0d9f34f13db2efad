# Self-Guided MAE on the embedded demo data (CPU, a few minutes): random
# masks first, informed masks from a fixed early start (iteration 150), the
# exploitation rates logged every 50 iterations, pictures of the informed
# masks (relevance as a heat map) every 100 iterations and at the end.
_base_ = ['../mae/mae_vit-tiny-p4_demo.py']

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
    dict(type='SelfGuidedStartHook', start=150, by_epoch=False, interval=50,
         num_images=32, hint_ratio=(0.1, 0.05)),
    dict(type='MaskVisualizationHook', num_images=8, interval=100),
]
