# Fine-tuning of an MLO-MAE ViT-B with 2 px patches on 32 px CIFAR-10 (the
# encoder of configs/mlo_mae/mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10.py)
# with mmpretrain's MAE fine-tuning recipe at one GPU (see
# vit-tiny-p2_1xb256-coslr-100e_cifar10.py: global-pooled tokens, layer-wise
# lr decay 0.65, RandAugment, Mixup/CutMix, 100 epochs).  Trains on `train`,
# reports on `val`.
#   python tools/train.py configs/benchmarks/mlo-mae_vit-base-p2_1xb256-coslr-100e_cifar10.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10/iter_62600.pth
_base_ = ['./vit-tiny-p2_1xb256-coslr-100e_cifar10.py']
embed_dims = 768
model = dict(
    backbone=dict(arch='b', patch_size=2),
    head=dict(in_channels=embed_dims))
