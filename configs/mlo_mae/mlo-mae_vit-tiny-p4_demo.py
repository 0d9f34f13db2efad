# MLO-MAE on the embedded CIFAR-10 subset (data/cifar10_demo, 10 classes x
# 100 images): a small ViT MAE (4 blocks of 128, patch 4) whose masks come
# from the paper's masking network, trained by the hypergradient of a linear
# head's validation loss (levels 2 and 3 on a stratified 80/20 split of the
# same folders), updated every 2nd outer iteration.  On CPU:
#   python tools/train.py configs/mlo_mae/mlo-mae_vit-tiny-p4_demo.py \
#       --work-dir work_dirs/mlo_mae_demo
# Every 100 outer iterations and at the end: masks_iter_<n>.png /
# masks_final.png (5th column: the masking probabilities, red = masked
# first); the split is in work_dirs/mlo_mae_demo/mlo_split/.
# Stage-II evaluation (the paper's linear-probe number, docs/mlo_mae.md):
# every 100 iterations the level-2 head's top-1/top-5 on 20 images per class
# held out from levels 2 and 3 (a seeded split of the demo folders; the MAE
# of level 1 reads all 1,000 images, without labels).
_base_ = ['./_base_/mlo_demo.py']
max_iters = 300
warmup_iters = 30
# smaller than the MAE demo's ViT-tiny (12 x 192): an outer iteration costs
# several MAE steps (see docs/mlo_mae.md, cost)
model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=128, num_layers=4, num_heads=4,
            feedforward_channels=512)),
    neck=dict(
        embed_dim=128, decoder_embed_dim=128, decoder_depth=1,
        decoder_num_heads=4),
    downstream_head=dict(in_channels=128))
train_dataloader = dict(batch_size=16)
_folders = dict(
    type='ImageFolder',
    data_root='data/cifar10_demo',
    with_label=True,
    pipeline={{_base_.labelled_pipeline}})
# 80 % of each class for levels 2 and 3 (split again 80/20 by the loop),
# 20 % held out for the stage-II evaluation
_heldout = dict(type='LabelledSplit', dataset=_folders, ratio=0.8, seed=1)
train_cfg = dict(
    max_iters=max_iters,
    masker_update_interval=2,
    val_interval=100,
    labelled_split=dict(dataset=dict(_heldout, part='train', _delete_=True)),
    train_split_dataloader=dict(batch_size=16),
    val_split_dataloader=dict(batch_size=16))
val_dataloader = dict(
    batch_size=50,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(_heldout, part='val'))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
val_cfg = dict()
# the masking network at 1e-5: AdamW moves each of its 64·128 -> 512 input
# weights by ~lr per step, and at the paper's 1e-3 its probabilities
# saturate within ~15 masker updates into one position pattern for every
# image (measured with the default weighting: docs/mlo_mae.md)
optim_wrapper = dict(
    mae=dict(optimizer=dict(lr=1.5e-3)),
    head=dict(optimizer=dict(lr=1e-3)),
    masker=dict(optimizer=dict(lr=1e-5)))
_schedule = [
    dict(_base_.warmup_by_iter, end=warmup_iters),
    dict(_base_.cosine_by_iter, begin=warmup_iters, end=max_iters)
]
# (eta_min = the masking network's lr: after the warm-up it stays at 1e-5)
param_scheduler = dict(mae=_schedule, head=_schedule, masker=_schedule)
