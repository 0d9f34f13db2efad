# Self-Guided MAE's settings shared by the configs of configs/sg_mae/
# (docs/self_guided_mae.md).  A config inherits a plain MAE config and this
# file, and sets `model.type='SelfGuidedMAE'` with these keys.
sg_mask_ratio = 0.75
sg_model = dict(
    type='SelfGuidedMAE',
    masker=dict(type='RandomMasker', mask_ratio=sg_mask_ratio),
    informed_masker=dict(type='SelfGuidedMasker', hint_mode='uniform'),
    # eq. 2: the attention output A(XW^V) of the second-to-last block, a
    # fully connected graph (negative similarities clamped)
    features='values',
    feature_layer=-2,
    ncut=dict(tau=0.0, max_iters=500, patience=48),
    # informed masks generated once at T for the rest of the training
    generation='once',
    # T: the first check where R_M->O >= R_V->O after being below, not
    # before epoch 10, at the latest at the paper's epoch 50 (of 400)
    switch=dict(criterion='crossing', by_epoch=True, interval=1, earliest=10,
                fallback=50),
    # hints: 5 % of the masked set at T, decaying linearly to 0 at the end
    hint_ratio=(0.05, 0.0),
    # the rates are measured on a fixed class-balanced sample of 256 images
    measurement=dict(num_images=256, seed=0))
# the crop records its box and PackInputs keeps it: the cached relevance is
# read through each sample's crop and flip
sg_pack_inputs = dict(
    type='PackInputs',
    meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
               'scale_factor', 'flip', 'flip_direction', 'crop_box'))
# the 32 px configs' training pipeline: the demo's augmentation with the
# recorded crop
sg_pipeline_32px = [
    dict(type='LoadImageFromFile'),
    dict(type='RecordedRandomResizedCrop', scale=32,
         crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    sg_pack_inputs,
]
