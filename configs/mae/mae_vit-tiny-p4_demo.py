# The `make demo` run: a ViT-tiny MAE on the embedded CIFAR-10 subset,
# a few hundred iterations on CPU, a checkpoint and a PNG of the masks.
_base_ = [
    '../_base_/models/mae_vit-tiny-p4.py',
    '../_base_/datasets/cifar10_demo_mae.py',
    '../_base_/schedules/adamw_iters.py',
    '../_base_/demo_runtime.py',
]
