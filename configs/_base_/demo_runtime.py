# default_runtime.py for the short CPU demos counted in iterations: a
# checkpoint every 100 iterations (the last 2 kept), the masks drawn every
# 100 iterations, logs by iteration.
_base_ = ['./default_runtime.py']
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False,
                    max_keep_ckpts=2))
custom_hooks = [dict(type='MaskVisualizationHook', num_images=8,
                     interval=100)]
log_processor = dict(by_epoch=False)
