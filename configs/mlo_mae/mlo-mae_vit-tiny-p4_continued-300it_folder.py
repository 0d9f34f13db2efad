# Continued pretraining (paper §4.4): start MLO-MAE from an existing MAE
# checkpoint -- this package's ViT-tiny MAE (e.g. the MAE demo's
# work_dirs/demo/iter_400.pth, configs/mae/mae_vit-tiny-p4_demo.py) or
# mmpretrain's (same state-dict keys) -- on your own labelled class folders
# (root/<class>/<image>).  The encoder, decoder and pixel head are loaded;
# the masking network and the downstream head start fresh (listed as
# missing keys).  Level 1 reads the whole folder, levels 2 and 3 its
# stratified 80/20 split (work_dir/mlo_split/).
#   python tools/train.py configs/mlo_mae/mlo-mae_vit-tiny-p4_continued-300it_folder.py \
#       --cfg-options load_from=work_dirs/demo/iter_400.pth \
#       train_dataloader.dataset.data_root=data/my_folder \
#       train_cfg.labelled_split.dataset.data_root=data/my_folder \
#       model.downstream_head.num_classes=<number of classes>
# For a ViT-B/16 checkpoint (mmpretrain's MAE), use
# mlo-mae_vit-base-p16_8xb32-coslr-50e_in1k.py with the
# same --cfg-options plus train_cfg.labelled_split.dataset.type=ImageFolder
# and a shorter train_cfg.max_epochs.
_base_ = ['./_base_/mlo_demo.py']
load_from = 'work_dirs/demo/iter_400.pth'  # an MAE checkpoint
max_iters = 300
train_dataloader = dict(batch_size=32)
train_cfg = dict(
    max_iters=max_iters,
    train_split_dataloader=dict(batch_size=32),
    val_split_dataloader=dict(batch_size=32))
# a pretrained MAE: no warm-up, a lower lr; the masking network slowly (see
# mlo-mae_vit-tiny-p4_demo.py)
optim_wrapper = dict(
    mae=dict(optimizer=dict(lr=1.5e-4)),
    head=dict(optimizer=dict(lr=1e-3)),
    masker=dict(optimizer=dict(lr=1e-5)))
_schedule = [
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
         eta_min=1e-6)
]
param_scheduler = dict(mae=_schedule, head=_schedule, masker=_schedule)
