# A short linear probe of a ViT-tiny with 4 px patches on 32 px CIFAR-10,
# for CPU-scale studies (docs/study.md): mmpretrain's MAE linear-probe model
# (frozen backbone, class token after the final norm, BatchNorm without
# affine, linear head) with AdamW at lr 1e-2 and a 3-epoch cosine schedule
# instead of LARS over 90 epochs.  LARS scales each step by the weight norm,
# and the head starts at std 0.01: in the few dozen iterations a CPU can
# afford it hardly moves (the 90-epoch recipe at 3 epochs of 5,000 images
# ended at the chance loss 2.31 on the study's MAE checkpoint).  Not the
# papers' protocol: numbers from it compare configs with each other only.
#   python tools/train.py configs/benchmarks/vit-tiny-p4_1xb256-linear-adamw-3e_cifar10.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/PRETRAIN/iter_N.pth
_base_ = ['./vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py']
max_epochs = 3
model = dict(backbone=dict(patch_size=4))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=1e-2, betas=(0.9, 0.999),
        weight_decay=0.0))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0,
         end=max_epochs, eta_min=0.0, convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs)
