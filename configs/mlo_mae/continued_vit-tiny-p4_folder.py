# Continued pretraining (paper §4.4): start MLO-MAE from an existing MAE
# checkpoint -- this package's (e.g. the MAE demo's work_dirs/demo/
# iter_400.pth) or mmpretrain's (same state-dict keys) -- on your own
# labelled class folders (root/<class>/<image>).  The encoder, decoder and
# pixel head are loaded; the masking network and the downstream head start
# fresh (reported as missing keys).  All three levels read the folder; levels
# 2 and 3 its stratified 80/20 split.
#   python tools/train.py configs/mlo_mae/continued_vit-tiny-p4_folder.py \
#       --cfg-options load_from=work_dirs/demo/iter_400.pth \
#       train_dataloader.dataset.data_root=data/my_folder \
#       train_cfg.labelled_split.dataset.data_root=data/my_folder \
#       model.downstream_head.num_classes=<number of classes>
# For a ViT-B/16 checkpoint of mmpretrain, start from vitb_in1k.py instead
# with the same three --cfg-options (load_from, the two data roots; and
# train_cfg.labelled_split.dataset.type=ImageFolder) and max_epochs.
_base_ = ['./vit-tiny-p4_demo.py']
load_from = 'work_dirs/demo/iter_400.pth'  # an MAE checkpoint
# the pretrained MAE needs no warm-up: a lower, constant-then-cosine lr
optim_wrapper = dict(mae=dict(optimizer=dict(lr=1.5e-4)))
_schedule = [
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=300,
         eta_min=1e-6)
]
param_scheduler = dict(_delete_=True, mae=_schedule, head=_schedule,
                       masker=_schedule)
