# COCO at Self-Guided MAE's schedule length (Shin et al., NeurIPS 2024:
# Mask R-CNN, 90k iterations; MAE 43.0 / 38.9, Self-Guided 43.3 / 39.3 AP
# box / mask): the ViTDet protocol of
# vitdet_mask-rcnn_vit-b_16xb4-amp-lsj-100e_coco.py cut to 90,000
# iterations, the lr steps at the same fractions (88.9 %, 96.3 %).  The
# paper gives the length only (no code is public): batch, lr and
# augmentation are the ViTDet protocol's, an assumption.
#
#   bash $MMDET/.mim/tools/dist_train.sh THIS_CONFIG 16 --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/PRETRAIN/backbone_vitdet.pth
_base_ = ['./vitdet_mask-rcnn_vit-b_16xb4-amp-lsj-100e_coco.py']

max_iters = 90000
interval = 5000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[80000, 86667], gamma=0.1)
]
# 90,000 is a multiple of the interval: the last validation is at the end
train_cfg = dict(
    max_iters=max_iters, val_interval=interval, dynamic_intervals=None)
