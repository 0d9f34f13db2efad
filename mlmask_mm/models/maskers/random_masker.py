"""Uniformly random masking (MAE, He et al. 2022, §3 "Masking")."""
from typing import Optional

import torch

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking


@MODELS.register_module()
class RandomMasker(BaseMasker):
    """Mask a random subset of r·L patches per image.

    noise ~ U(0, 1)^{B x L}; keep the K = int(L (1 - r)) patches with the
    smallest noise.  With the same RNG state it draws exactly the noise of
    mmpretrain's ``MAEViT.random_masking`` and so gives the same masks.
    """

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        B, L = tokens.shape[:2]
        noise = torch.rand(B, L, device=tokens.device)
        return mask_from_ranking(noise, self.num_keep(L))
