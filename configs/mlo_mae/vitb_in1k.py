# Short name of mlo-mae_vit-base-p16_8xb32-coslr-50e_in1k.py (MLO-MAE, ViT-B/16,
# ImageNet-1k, the paper's settings).
_base_ = ['./mlo-mae_vit-base-p16_8xb32-coslr-50e_in1k.py']
