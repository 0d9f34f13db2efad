# CL-MAE, ViT-tiny/4 on 32 px CIFAR-10 with the published masking module
# (official MaskingNet: Linear(D, L) on its token, 4 heads, 5 blocks; the
# demo has 2), the published objective and one lr for both parts; batch 64
# and the demo's augmentation as the MAE / Self-Guided ViT-tiny/4 configs,
# 10k iterations.  Data: the `train` split (see cifar10_mae.py).
#   python tools/train.py configs/cl_mae/cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py
_base_ = ['./cl-mae_vit-tiny-p4_demo.py']
max_iters = 10000
warmup_iters = 1000
train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    dataset=dict(
        data_root='data/cifar10',
        data_prefix='train',
        ann_file='meta/train.txt'))  # files 0000-4499 of each class
model = dict(masker=dict(num_layers=5))
_schedule = [
    dict(_base_.warmup_by_iter, end=warmup_iters),
    dict(_base_.cosine_by_iter, begin=warmup_iters, end=max_iters)
]
param_scheduler = dict(mae=_schedule, masker=_schedule)
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=1000, max_keep_ckpts=2))
custom_hooks = [
    _base_.cl_curriculum_hook,
    dict(type='MaskVisualizationHook', num_images=8, interval=1000),
]
