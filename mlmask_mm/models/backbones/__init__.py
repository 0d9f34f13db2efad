from .fast_vit import FastMAEViT
from .maskable_vit import MaskableViT, check_patch_grid
from .vitdet import ViTDet

__all__ = ['MaskableViT', 'check_patch_grid', 'FastMAEViT', 'ViTDet']
