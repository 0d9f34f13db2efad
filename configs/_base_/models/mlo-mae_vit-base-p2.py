# MLO-MAE with a ViT-B on 32 px CIFAR images, patch 2 (256 patches), as in
# the paper's CIFAR experiments; the paper's masking network is then
# 256·768 -> 512 -> 256, ~100 M parameters.
_base_ = ['./mlo-mae_vit-base-p16.py']
model = dict(
    backbone=dict(img_size=32, patch_size=2),
    neck=dict(num_patches=256, patch_size=2),
    head=dict(patch_size=2),
    downstream_head=dict(num_classes=10),
    hypergrad=dict(unroll_steps=2))  # the paper's CIFAR setting
