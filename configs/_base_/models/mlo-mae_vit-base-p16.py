# MLO-MAE with mmpretrain's ViT-B/16 MAE (224 px, 196 patches; decoder 8 x
# 512) on ImageNet-1k: the MLO parts (masking network, downstream head,
# hypergradient options) of mlo-mae_vit-tiny-p4.py at ViT-B size.  The
# paper's masking network is 196·768 -> 512 -> 196, ~77 M parameters.
_base_ = ['./mlo-mae_vit-tiny-p4.py']
model = dict(
    backbone=dict(arch='b', img_size=224, patch_size=16),
    neck=dict(
        num_patches=196,
        patch_size=16,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16),
    head=dict(patch_size=16),
    downstream_head=dict(num_classes=1000, in_channels=768),
    hypergrad=dict(unroll_steps=1))  # the paper's ImageNet setting
