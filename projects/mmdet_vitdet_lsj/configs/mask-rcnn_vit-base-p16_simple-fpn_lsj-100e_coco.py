# Mask R-CNN on COCO with ViTDet's training recipe for a plain ViT-B/16
# (Li et al. 2022, §4 / appendix A.2): large-scale jitter at 1024x1024
# (scale 0.1-2.0), 100 epochs, batch 64, AdamW lr 1e-4, wd 0.1, layer-wise
# lr decay 0.7, drop path 0.1, mixed precision.  Inherits mmdet's own LSJ
# Mask R-CNN config (pipeline, schedule, fixed-size batch padding) and swaps
# the ResNet-50 + FPN for this package's pretrained ViT and
# SimpleFeaturePyramid (registered in mmdet by
# mlmask_mm.transfer.mmdet_components).  Not ViTDet itself: global attention
# in all blocks (ViTDet uses windowed attention in most blocks).
#
# Run from the repository root (see this project's README):
#   bash $MMDET/.mim/tools/dist_train.sh THIS_CONFIG 8 --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/PRETRAIN/backbone.pth
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_8xb8-amp-lsj-200e_coco.py']

custom_imports = dict(
    imports=['mlmask_mm.transfer.mmdet_components', 'mmpretrain.models'],
    allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='base',
        img_size=1024,
        patch_size=16,
        out_indices=(11, ),
        out_type='featmap',
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=True,
        init_cfg=dict(
            type='Pretrained', checkpoint='work_dirs/pretrain/backbone.pth')),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5))

# ViTDet: 100 epochs (the base's dataset repeat of 4 x 25 epochs), warm-up
# 250 iterations, lr steps at 88.9% and 96.3% of training
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True,
         milestones=[22, 24], gamma=0.1)
]
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
