# A ViT-tiny MAE for 32 px images (patch 4 -> 8x8 = 64 patches).
img_size = 32
patch_size = 4
model = dict(
    type='MaskedMAE',
    backbone=dict(
        type='MaskableViT',
        arch=dict(
            embed_dims=192, num_layers=12, num_heads=3,
            feedforward_channels=768),
        img_size=img_size,
        patch_size=patch_size,
        mask_ratio=0.75),
    neck=dict(
        type='MAEPretrainDecoder',
        num_patches=(img_size // patch_size)**2,
        patch_size=patch_size,
        in_chans=3,
        embed_dim=192,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,
        mlp_ratio=4.),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=patch_size,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    masker=dict(type='RandomMasker', mask_ratio=0.75),
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
