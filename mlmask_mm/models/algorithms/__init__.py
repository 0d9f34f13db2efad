from .cl_mae import CLMAE
from .masked_mae import MaskedMAE
from .mlo_mae import MLOMAE
from .self_guided_mae import SelfGuidedMAE

__all__ = ['MaskedMAE', 'CLMAE', 'MLOMAE', 'SelfGuidedMAE']
