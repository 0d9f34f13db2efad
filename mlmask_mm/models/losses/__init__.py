"""Loss functions of the learned-masking methods (pure functions)."""
from .cl_mae_losses import (binarization_loss, diversity_loss, kl_ratio_loss,
                            masking_module_loss, soft_reconstruction_loss)
from .mlo_mae_losses import (per_patch_reconstruction_loss,
                             probability_weighted_loss)

__all__ = [
    'soft_reconstruction_loss', 'binarization_loss', 'kl_ratio_loss',
    'diversity_loss', 'masking_module_loss',
    'per_patch_reconstruction_loss', 'probability_weighted_loss'
]
