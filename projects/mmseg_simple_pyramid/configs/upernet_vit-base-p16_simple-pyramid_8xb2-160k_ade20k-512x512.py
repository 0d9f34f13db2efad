# UPerNet on ADE20K whose multi-scale inputs come from ViTDet's simple
# feature pyramid (mlmask_mm's SimpleFeaturePyramid: deconvolutions /
# pooling of the last ViT map, LayerNorm, no BatchNorm) instead of mmseg's
# Feature2Pyramid over four intermediate blocks (BatchNorm).  Everything else
# is configs/transfer/upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py
# (mmseg's MAE recipe, converted mlmask_mm checkpoint, layer-wise lr decay).
#
# Run from the repository root (see this project's README):
#   bash $MMSEG/.mim/tools/dist_train.sh THIS_CONFIG 8 --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/PRETRAIN/backbone.pth
_base_ = [
    '../../../configs/transfer/'
    'upernet_vit-base-p16_8xb2-amp-160k_ade20k-512x512.py'
]

custom_imports = dict(
    imports=['mlmask_mm.transfer.mmseg_components', 'mmpretrain.models'],
    allow_failed_imports=False)

pyramid_channels = 256
model = dict(
    backbone=dict(out_indices=(11, )),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=768,
        out_channels=pyramid_channels,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=4),
    decode_head=dict(in_channels=[pyramid_channels] * 4),
    auxiliary_head=dict(in_channels=pyramid_channels))
