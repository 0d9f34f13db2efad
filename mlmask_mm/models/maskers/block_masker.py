"""Block-wise masking (MAE paper §4 / Fig. 6, after BEiT's blockwise masking)."""
import math
from typing import Optional

import torch

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking


@MODELS.register_module()
class BlockMasker(BaseMasker):
    """Mask large random rectangles of patches until r·L are covered.

    Rectangles have area a ~ U(min_block, max_block_fraction · L) patches and
    aspect ratio exp(U(log ρ, -log ρ)) (ρ = ``min_aspect``), as in BEiT.  The
    union of the rectangles is ranked first for masking and the count is then
    made exact: ranking = noise - 2 · in_block, so the r·L masked patches are
    the block patches (a random subset if the blocks overshoot) topped up at
    random if they fall short.

    The rectangles are drawn per image on the CPU with a generator seeded
    from torch's global RNG, so runs are reproducible under a fixed seed.

    Args:
        mask_ratio: fraction r of masked patches.
        min_block: smallest rectangle area, in patches.
        min_aspect: smallest aspect ratio ρ (the largest is 1 / ρ).
        max_attempts: rectangles tried per image before topping up.
    """

    def __init__(self,
                 mask_ratio: float = 0.75,
                 min_block: int = 4,
                 min_aspect: float = 0.3,
                 max_attempts: int = 100,
                 init_cfg=None) -> None:
        super().__init__(mask_ratio=mask_ratio, init_cfg=init_cfg)
        if min_block < 1:
            raise ValueError(f'min_block must be >= 1, got {min_block}')
        if not 0 < min_aspect <= 1:
            raise ValueError(
                f'min_aspect must be in (0, 1], got {min_aspect}')
        self.min_block = min_block
        self.log_aspect = (math.log(min_aspect), -math.log(min_aspect))
        self.max_attempts = max_attempts

    def _blocks(self, h: int, w: int, num_mask: int,
                gen: torch.Generator) -> torch.Tensor:
        """One h x w boolean map covered by random rectangles."""
        covered = torch.zeros(h, w, dtype=torch.bool)
        for _ in range(self.max_attempts):
            if int(covered.sum()) >= num_mask:
                break
            u = torch.rand(3, generator=gen).tolist()
            area = self.min_block + u[0] * max(num_mask - self.min_block, 0)
            aspect = math.exp(self.log_aspect[0] + u[1] *
                              (self.log_aspect[1] - self.log_aspect[0]))
            bh = min(h, max(1, round(math.sqrt(area * aspect))))
            bw = min(w, max(1, round(math.sqrt(area / aspect))))
            top = int(torch.randint(0, h - bh + 1, (1, ), generator=gen))
            left = int(torch.randint(0, w - bw + 1, (1, ), generator=gen))
            covered[top:top + bh, left:left + bw] = True
        return covered.flatten()

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        B, L = tokens.shape[:2]
        h, w = _grid(context, L)
        num_keep = self.num_keep(L)
        gen = torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1, ))))
        in_block = torch.stack(
            [self._blocks(h, w, L - num_keep, gen) for _ in range(B)])
        noise = torch.rand(B, L, device=tokens.device)
        # smallest ranking is kept: block patches get pushed to the end
        ranking = noise + 2 * in_block.to(tokens.device, noise.dtype)
        return mask_from_ranking(ranking, num_keep)


def _grid(context: Optional[MaskContext], num_patches: int):
    """The (h, w) patch grid from the context, or a square grid."""
    if context is not None:
        h, w = context.patch_resolution
    else:
        h = w = int(round(math.sqrt(num_patches)))
    if h * w != num_patches:
        raise ValueError(f'patch_resolution {(h, w)} does not match the '
                         f'{num_patches} tokens')
    return h, w
