# ADE20K semantic segmentation, UPerNet on this package's pretrained ViT-B/16.
#
# Inherits mmseg's own MAE recipe (UPerNet + Feature2Pyramid neck, 512x512
# crops, 160k iterations, AdamW lr 1e-4, wd 0.05, layer-wise lr decay 0.65,
# linear warm-up 1.5k iterations then poly) and only swaps the backbone for
# mmpretrain's VisionTransformer, whose keys are those of mlmask_mm's
# encoder.  First convert the pretraining checkpoint:
#
#   python tools/model_converters/mlmask2backbone.py \
#       work_dirs/PRETRAIN/iter_N.pth work_dirs/PRETRAIN/backbone.pth
#
# then train with mmseg's tools (8 GPUs x 2 images, as the recipe):
#
#   bash $MMSEG/.mim/tools/dist_train.sh THIS_CONFIG 8 --amp --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/PRETRAIN/backbone.pth
#
# ($MMSEG = the installed mmseg package folder; see docs/transfer.md).
#
# The position embedding (pretrained at 224 px) is interpolated to the 32x32
# grid of 512 px crops when the checkpoint is loaded (mmpretrain's ViT).
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']

custom_imports = dict(
    imports=['mlmask_mm.transfer.mmseg_components', 'mmpretrain.models'],
    allow_failed_imports=False)

# output of tools/model_converters/mlmask2backbone.py (--target mmpretrain);
# --cfg-options must name model.backbone.init_cfg.checkpoint (this variable
# is substituted when the file is read)
pretrained_backbone = 'work_dirs/pretrain/backbone.pth'

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='base',
        img_size=512,
        patch_size=16,
        out_indices=(3, 5, 7, 11),
        out_type='featmap',
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone)))

# layer-wise lr decay with the depths of mmpretrain's ViT (mmseg's own
# LayerDecayOptimizerConstructor only accepts BEiT/MAE/ConvNeXt backbones)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
