# UPerNet on ADE20K whose multi-scale inputs come from ViTDet's simple
# feature pyramid (mlmask_mm's SimpleFeaturePyramid: deconvolutions /
# pooling of the last ViT map, LayerNorm, no BatchNorm) over a plain ViT
# (mmpretrain's VisionTransformer: the pretrained encoder as it is, final
# norm included, no parameter added), instead of mmseg's MAE backbone and
# Feature2Pyramid over four intermediate blocks.  Everything else is
# configs/transfer/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py (mmseg's
# MAE protocol: 160k iterations, AdamW, layer-wise lr decay 0.65, AMP).
# An experiment beside the protocol, not a published setting.
#
# Run from the repository root (see this project's README):
#   python tools/model_converters/mlmask2backbone.py \
#       work_dirs/PRETRAIN/iter_N.pth work_dirs/PRETRAIN/backbone.pth
#   bash $MMSEG/.mim/tools/dist_train.sh THIS_CONFIG 8 --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/PRETRAIN/backbone.pth
_base_ = [
    '../../../configs/transfer/'
    'mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'
]

custom_imports = dict(
    imports=['mlmask_mm.transfer.mmseg_components', 'mmpretrain.models'],
    allow_failed_imports=False)

pyramid_channels = 256
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='base',
        img_size=512,
        patch_size=16,
        out_indices=(11, ),
        out_type='featmap',
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='work_dirs/pretrain/backbone.pth')),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=768,
        out_channels=pyramid_channels,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=4),
    decode_head=dict(in_channels=[pyramid_channels] * 4),
    auxiliary_head=dict(in_channels=pyramid_channels))

# layer-wise lr decay with the depths of mmpretrain's ViT (mmseg's own
# LayerDecayOptimizerConstructor accepts only its BEiT / MAE / ConvNeXt)
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
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

# the converted checkpoint (--target mmpretrain) covers the plain ViT whole
custom_hooks = [dict(type='StrictPretrainedHook')]
