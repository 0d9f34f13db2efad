from .cl_mae import CLMAE  # noqa: F401
from .masked_mae import MaskedMAE
from .masked_vit import MaskableViT, check_patch_grid
from .mlo_mae import MLOMAE
from .self_guided_mae import SelfGuidedMAE

__all__ = ['MaskedMAE', 'MaskableViT', 'check_patch_grid', 'MLOMAE',
           'SelfGuidedMAE']
