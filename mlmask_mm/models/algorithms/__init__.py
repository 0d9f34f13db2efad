from .cl_mae import CLMAE  # noqa: F401
from .fast_vit import FastMAEViT
from .masked_mae import MaskedMAE
from .masked_vit import MaskableViT, check_patch_grid
from .mlo_mae import MLOMAE
from .self_guided_mae import SelfGuidedMAE

__all__ = ['FastMAEViT', 'MaskedMAE', 'MaskableViT', 'check_patch_grid',
           'MLOMAE', 'SelfGuidedMAE']
