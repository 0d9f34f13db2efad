"""Masks supplied with the data ("mask this region")."""
from typing import Optional

import torch
import torch.nn.functional as F

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking
from .block_masker import _grid


@MODELS.register_module()
class RegionMasker(BaseMasker):
    """Mask the region given by each image's ``data_sample.mask``.

    The per-image mask (1 = please mask) is an h x w map on the patch grid or
    an H x W map on the pixels; pixel maps are reduced to patches by average
    pooling and a patch counts as in the region when its covered fraction is
    at least ``pixel_threshold``.  The masked count stays exactly
    L - int(L (1 - r)) per image so batches remain rectangular:
    ranking = noise + 2 · in_region, i.e. region patches are masked first
    (a random subset of them when the region is larger than r·L) and the rest
    is filled with random patches.  The fraction of masked patches that lie
    in the region is logged by the algorithm through ``scores`` = in_region.

    Load the maps with the pipeline (e.g. ``LoadRegionMask``); any geometric
    augmentation must be applied to image and mask alike.
    """

    def __init__(self,
                 mask_ratio: float = 0.75,
                 pixel_threshold: float = 0.5,
                 init_cfg=None) -> None:
        super().__init__(mask_ratio=mask_ratio, init_cfg=init_cfg)
        self.pixel_threshold = pixel_threshold

    def region(self, context: Optional[MaskContext], batch: int,
               num_patches: int, device) -> torch.Tensor:
        """B x L float map, 1 inside the supplied regions."""
        if context is None or context.data_samples is None:
            raise ValueError('RegionMasker needs data_samples with a `mask` '
                             'field (set by the pipeline), got none')
        h, w = _grid(context, num_patches)
        maps = []
        for i, sample in enumerate(context.data_samples):
            if 'mask' not in sample:
                raise ValueError(
                    f'RegionMasker: data sample {i} has no `mask` field; add '
                    'a transform that sets results["mask"] (LoadRegionMask)')
            m = torch.as_tensor(sample.mask, device=device).float()
            m = m.reshape(m.shape[-2:]) if m.dim() > 2 else m
            if tuple(m.shape) != (h, w):
                H, W = m.shape
                if H % h or W % w:
                    raise ValueError(
                        f'RegionMasker: mask of shape {(H, W)} is neither the '
                        f'patch grid {(h, w)} nor a multiple of it')
                m = F.avg_pool2d(m[None, None], (H // h, W // w))[0, 0]
                m = (m >= self.pixel_threshold).float()
            maps.append(m.flatten())
        if len(maps) != batch:
            raise ValueError(f'RegionMasker: {len(maps)} masks for a batch '
                             f'of {batch} images')
        return torch.stack(maps)

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        B, L = tokens.shape[:2]
        in_region = self.region(context, B, L, tokens.device)
        noise = torch.rand(B, L, device=tokens.device)
        ranking = noise + 2 * (in_region > 0).to(noise.dtype)
        return mask_from_ranking(ranking, self.num_keep(L), scores=in_region)
