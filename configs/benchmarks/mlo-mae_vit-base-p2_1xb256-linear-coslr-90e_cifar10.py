# Linear probe of an MLO-MAE ViT-B with 2 px patches on 32 px CIFAR-10 (the
# encoder of configs/mlo_mae/mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10.py):
# frozen backbone, class token, mmpretrain's MAE linear-probe recipe at one
# GPU (see vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py).  Trains on
# `train` (files 0000-4499 per class), reports on `val` (4500-4999).
# The paper's CIFAR "linear probe" is the stage-II head of the pretraining
# run itself (logged by MLOTrainLoop, docs/mlo_mae.md); this is the
# standard separate probe of the same encoder.
#   python tools/train.py configs/benchmarks/mlo-mae_vit-base-p2_1xb256-linear-coslr-90e_cifar10.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10/iter_62600.pth
_base_ = ['./vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py']
embed_dims = 768
model = dict(
    backbone=dict(arch='b', patch_size=2),
    neck=dict(input_features=embed_dims),
    head=dict(in_channels=embed_dims))
