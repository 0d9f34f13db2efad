# Continued pretraining (paper §4.4) on CIFAR-10 for equal-budget studies:
# MLO-MAE from an existing ViT-tiny/4 MAE checkpoint (this package's
# configs/mae/mae_vit-tiny-p4_demo.py trained on CIFAR-10, or mmpretrain's:
# same keys), the data and batches of
# mlo-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py, the paper's masker lr
# 1e-3, the MAE at a tenth of its from-scratch lr and no warm-up (the
# encoder is trained already; as mlo-mae_vit-tiny-p4_continued-300it_folder.py).
# The encoder, decoder and pixel head are loaded; the masking network and
# the downstream head start fresh (missing keys).
#   python tools/train.py configs/mlo_mae/mlo-mae_vit-tiny-p4_1xb64-continued_cifar10.py \
#       --cfg-options load_from=work_dirs/mae/iter_5000.pth
# In a study: tools/misc/study.py ... --continue LABEL=MAE_LABEL@N (docs/study.md).
_base_ = ['./mlo-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py']
max_iters = 1000
train_cfg = dict(max_iters=max_iters)
optim_wrapper = dict(
    mae=dict(optimizer=dict(lr=1.5e-4)),
    head=dict(optimizer=dict(lr=1e-3)),
    masker=dict(optimizer=dict(lr=1e-3)))
_schedule = [
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
         eta_min=1e-6)
]
param_scheduler = dict(mae=_schedule, head=_schedule, masker=_schedule)
default_hooks = dict(checkpoint=dict(interval=100))
