"""An example masker written outside mlmask_mm: mask textured patches more.

Per image, patch i's texture is the variance v_i of its pixels (all
channels).  The K = int(L (1 - r)) visible patches are drawn without
replacement with probabilities ∝ exp(−v_i / (τ · mean_j v_j)) by the
Gumbel-top-k trick (Kool et al. 2019, "Stochastic Beams and Where to Find
Them", §3): with g_i ~ Gumbel(0, 1),

    keep = the K patches with the largest  −v_i / (τ · v̄) + g_i,

so flat patches tend to stay visible and textured ones to be masked;
τ → ∞ is MAE's uniform random masking, τ → 0 masks the r·L most textured.
``MaskResult.scores`` = softmax(−v / (τ · v̄)), the probability of each
patch being the first one kept.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from mlmask_mm.models.maskers.base import (BaseMasker, MaskContext,
                                           MaskResult, mask_from_ranking)
from mlmask_mm.registry import MODELS


@MODELS.register_module()
class TextureMasker(BaseMasker):
    """Mask high-variance (textured) patches more often than flat ones.

    Args:
        mask_ratio: r, the fraction of patches masked.
        temperature: τ > 0 of the keep distribution (see the module doc).
    """

    def __init__(self, mask_ratio: float = 0.75, temperature: float = 1.0,
                 init_cfg=None) -> None:
        super().__init__(mask_ratio=mask_ratio, init_cfg=init_cfg)
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(
                f'model.masker.temperature must be > 0, got {temperature!r}')
        self.temperature = float(temperature)

    def patch_variance(self, images: torch.Tensor, patch_resolution
                       ) -> torch.Tensor:
        """v: B x L pixel variance of each patch (row-major patch order)."""
        h, w = patch_resolution
        H, W = images.shape[-2:]
        patches = F.unfold(images.float(), kernel_size=(H // h, W // w),
                           stride=(H // h, W // w))  # B x (C·p·q) x L
        return patches.var(dim=1, unbiased=False)

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        if images is None or context is None:
            raise ValueError('TextureMasker needs the images and the mask '
                             'context (patch_resolution)')
        B, L = tokens.shape[:2]
        v = self.patch_variance(images, context.patch_resolution)
        if v.shape != (B, L):
            raise ValueError(f'{tuple(v.shape)} patch variances for {L} '
                             'tokens: the patch grid does not match')
        logits = -v / (self.temperature * v.mean(dim=1, keepdim=True)
                       .clamp_min(1e-12))
        gumbel = -torch.log(-torch.log(
            torch.rand(B, L, device=tokens.device).clamp(1e-12, 1 - 1e-7)))
        # mask_from_ranking keeps the smallest values
        return mask_from_ranking(-(logits + gumbel), self.num_keep(L),
                                 scores=logits.softmax(dim=1))

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, temperature={self.temperature}'
