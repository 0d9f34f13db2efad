# What the MLO-MAE demo and the continued-pretraining config share: the
# ViT-tiny/4 MLO-MAE with one unrolled MAE step per outer iteration, the
# embedded demo folders (level 1 reads them all, levels 2 and 3 a
# stratified 80/20 split), the paper's optimizers, the demo runtime.
_base_ = [
    '../../_base_/models/mlo-mae_vit-tiny-p4.py',
    '../../_base_/datasets/cifar10_demo_mae.py',
    '../../_base_/datasets/mlo_labelled_split.py',
    '../../_base_/schedules/mlo-mae_adamw.py',
    '../../_base_/demo_runtime.py',
]
model = dict(hypergrad=dict(unroll_steps=1))
