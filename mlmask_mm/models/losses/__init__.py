"""Loss functions of the learned-masking methods (pure functions)."""
from .cl_mae_losses import (binarization_loss, diversity_loss, kl_ratio_loss,
                            masking_module_loss, soft_reconstruction_loss)

__all__ = [
    'soft_reconstruction_loss', 'binarization_loss', 'kl_ratio_loss',
    'diversity_loss', 'masking_module_loss'
]
