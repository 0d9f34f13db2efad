# COCO detection / instance segmentation at ViTDet's protocol for a
# MAE-pretrained ViT-B/16 (Li et al. 2022; anchor: mmdet
# projects/ViTDet/configs/vitdet_mask-rcnn_vit-b-mae_lsj-100e.py with its
# lsj-100e_coco-instance.py, which the mmdet wheel does not ship: their
# settings are written out here).
#
# Backbone ViTDet (mlmask_mm.models.backbones): windows of 14 with global
# blocks 2, 5, 8, 11, decomposed relative positions (init 0), drop path 0.1;
# simple feature pyramid (strides 4-32 + pooled 64, LayerNorm); RPN with 2
# convs, 4conv1fc box head and mask head with LayerNorm; LSJ 1024 (scale
# 0.1-2.0), test: resize to 1024 + pad to 1024x1024; AdamW lr 1e-4 wd 0.1,
# layer-wise lr decay 0.7, 184,375 iterations at batch 64 (16 GPUs x 4),
# steps at 163,889 / 177,546, mixed precision.  configs/transfer/README.md
# lists every difference from the anchor.
#
#   python tools/model_converters/mlmask2backbone.py \
#       work_dirs/PRETRAIN/iter_N.pth work_dirs/PRETRAIN/backbone_vitdet.pth --target vitdet
#   bash $MMDET/.mim/tools/dist_train.sh THIS_CONFIG 16 --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/PRETRAIN/backbone_vitdet.pth
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(
    imports=['mlmask_mm.transfer.mmdet_components'],
    allow_failed_imports=False)

image_size = (1024, 1024)
norm_cfg = dict(type='LN2d', eps=1e-6, requires_grad=True)

# output of mlmask2backbone.py --target vitdet (override on the command
# line: --cfg-options model.backbone.init_cfg.checkpoint=PATH)
model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[
            dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)
        ]),
    backbone=dict(
        _delete_=True,
        type='ViTDet',
        arch='base',
        img_size=1024,
        patch_size=16,
        pretrain_img_size=224,
        window_size=14,
        drop_path_rate=0.1,
        out_indices=(11, ),
        norm_cfg=dict(type='LN', eps=1e-6),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/pretrain/backbone_vitdet.pth')),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

# ----------------------------------------------------------------- data
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator

# ------------------------------------------------------------ schedule
# layer-wise lr decay 0.7 over the 12 blocks (detectron2's
# get_vit_lr_decay_rate): block i x 0.7^(12-i), patch/position embedding
# x 0.7^13, neck and heads x 1; no weight decay on norms, biases and the
# position embedding
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.pos_embed': dict(decay_mult=0.0)}))

# 100 epochs = 184,375 iterations x 64 images / 118k images
max_iters = 184375
interval = 5000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[163889, 177546], gamma=0.1)
]
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, save_last=True,
                    interval=interval, max_keep_ckpts=5))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)

# the checkpoint must cover the backbone; only these start from their init
custom_hooks = [
    dict(type='StrictPretrainedHook',
         new_params=[r'layers\.\d+\.attn\.rel_pos_[hw]'])
]

# 16 GPUs x 4 images; --auto-scale-lr rescales lr to another total batch
auto_scale_lr = dict(enable=False, base_batch_size=64)
