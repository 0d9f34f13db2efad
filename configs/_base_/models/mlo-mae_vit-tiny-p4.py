# MLO-MAE on the ViT-tiny MAE for 32 px images (patch 4 -> 64 patches):
# the MAE (θ1), a masking network (φ) and a linear head on frozen encoder
# features (θ2, the downstream task of levels 2 and 3).
_base_ = ['./mae_vit-tiny-p4.py']
model = dict(
    type='MLOMAE',
    # the paper's masking network (patch embeddings -> 512 -> L, sigmoid;
    # its size defaults to the backbone's); the light per-token variant:
    #   --cfg-options model.masker.type=MLOTokenMasker \
    #       model.masker.hidden_dims=128
    masker=dict(
        _delete_=True, type='MLOMLPMasker', hidden_dims=512,
        mask_ratio=0.75),
    # the downstream task of levels 2 and 3: any mmpretrain cls head
    downstream_head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=192,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    feature='gap',  # or 'cls': the head's encoder features
    amp=None,  # 'bf16': autocast except the finite differences (fp32)
    # mode: 'exact' (double backward) | 'finite_difference'; unroll_steps: K
    # level-1 steps (and MAE batches) per outer iteration; unroll: 'exact'
    # recursion | 'last' step only
    hypergrad=dict(
        mode='exact', unroll_steps=2, unroll='exact', fd_radius=1e-2))
