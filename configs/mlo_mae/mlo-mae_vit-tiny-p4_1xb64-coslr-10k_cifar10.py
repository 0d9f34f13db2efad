# MLO-MAE, ViT-tiny/4 on 32 px CIFAR-10, counted in outer iterations (the
# 100-epoch config counts epochs, too coarse for short equal-budget runs):
# batch 64 for the MAE (as the MAE / Self-Guided / CL-MAE ViT-tiny/4
# configs), 128 for levels 2 and 3, 10k outer iterations with a 10 % warm-up.
# No stage-II evaluation during training: studies probe the checkpoint on
# the held-out part afterwards (tools/misc/study.py, docs/study.md).
#   python tools/train.py configs/mlo_mae/mlo-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py
_base_ = ['./mlo-mae_vit-tiny-p4_1xb128-coslr-100e_cifar10.py']
max_iters = 10000
warmup_iters = 1000
train_dataloader = dict(batch_size=64)
train_cfg = dict(max_epochs=None, max_iters=max_iters)
_schedule = [
    dict(_base_.warmup_by_iter, end=warmup_iters),
    dict(_base_.cosine_by_iter, begin=warmup_iters, end=max_iters)
]
param_scheduler = dict(mae=_schedule, head=_schedule, masker=_schedule)
val_dataloader = None
val_evaluator = None
val_cfg = None
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1000, by_epoch=False,
                    max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
