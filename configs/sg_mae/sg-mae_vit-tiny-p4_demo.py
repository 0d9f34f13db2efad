# Self-Guided MAE on the embedded demo data (CPU, a few minutes): random
# masks, the exploitation rates checked every 25 iterations, informed masks
# from the first crossing (not before iteration 50, at the latest at 200),
# generated once then; pictures of the masks every 100 iterations.
_base_ = ['../mae/mae_vit-tiny-p4_demo.py', './_base_/self_guided.py']

model = _base_.sg_model
model.update(switch=dict(by_epoch=False, interval=25, earliest=50,
                         fallback=200),
             measurement=dict(num_images=64))
train_dataloader = dict(dataset=dict(pipeline=_base_.sg_pipeline_32px))
custom_hooks = [
    dict(type='SelfGuidedHook'),
    dict(type='MaskVisualizationHook', num_images=8, interval=100),
]
