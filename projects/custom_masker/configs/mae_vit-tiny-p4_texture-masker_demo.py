# The package's demo MAE (ViT-tiny, patch 4, embedded CIFAR-10 subset) with
# this project's TextureMasker instead of random masking.  Run from the
# repository root:
#   PYTHONPATH=$PWD python tools/train.py \
#       projects/custom_masker/configs/mae_vit-tiny-p4_texture-masker_demo.py
_base_ = ['../../../configs/mae/mae_vit-tiny-p4_demo.py']

custom_imports = dict(
    imports=['mlmask_mm', 'projects.custom_masker.texture_masker'],
    allow_failed_imports=False)

model = dict(masker=dict(type='TextureMasker', mask_ratio=0.75,
                         temperature=0.5))
