# COCO instance segmentation, Mask R-CNN on this package's pretrained ViT-B/16.
#
# mmdet's own Mask R-CNN R50-FPN 1x config (heads, COCO pipeline and
# CocoMetric, 12 epochs) with the ResNet + FPN replaced by a plain ViT
# (mmpretrain's VisionTransformer, stride-16 map of its last block) and
# ViTDet's simple feature pyramid (SimpleFeaturePyramid, registered in mmdet by
# mlmask_mm.transfer.mmdet_components: strides
# 4, 8, 16, 32 + a max-pooled stride-64 level for the RPN).  AdamW with
# layer-wise lr decay as ViTDet's ViT-B (lr 1e-4, wd 0.1, decay 0.7).
# Global attention in every block (no window attention / relative position
# bias: those are ViTDet backbone changes, not part of the pretrained
# encoder).
#
#   python tools/model_converters/mlmask2backbone.py \
#       work_dirs/PRETRAIN/iter_N.pth work_dirs/PRETRAIN/backbone.pth
#   bash $MMDET/.mim/tools/dist_train.sh THIS_CONFIG 8 --amp --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/PRETRAIN/backbone.pth
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(
    imports=['mlmask_mm.transfer.mmdet_components', 'mmpretrain.models'],
    allow_failed_imports=False)

# output of tools/model_converters/mlmask2backbone.py (--target mmpretrain);
# override with --cfg-options model.backbone.init_cfg.checkpoint=...
pretrained_backbone = 'work_dirs/pretrain/backbone.pth'

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
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone)),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
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
        }),
    clip_grad=None)

# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
