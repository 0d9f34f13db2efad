# The `make demo` run: a ViT-tiny MAE on the embedded CIFAR-10 subset,
# a few hundred iterations on CPU, a checkpoint and a PNG of the masks.
_base_ = [
    '../_base_/models/mae_vit-tiny-p4.py',
    '../_base_/datasets/cifar10_demo_mae.py',
    '../_base_/schedules/adamw_iters.py',
    '../_base_/default_runtime.py',
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False,
                    max_keep_ckpts=2))
custom_hooks = [dict(type='MaskVisualizationHook', num_images=8,
                     interval=100)]
log_processor = dict(by_epoch=False)
