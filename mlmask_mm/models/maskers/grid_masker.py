"""Grid-wise masking (MAE paper §4 / Fig. 6: keep one of every s x s patches)."""
from typing import Optional

import torch

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking
from .block_masker import _grid


@MODELS.register_module()
class GridMasker(BaseMasker):
    """Keep the patches (i, j) with i ≡ oy and j ≡ ox (mod s).

    With stride s the kept fraction is 1 / s², so the mask ratio is
    r = 1 - 1 / s² (s = 2 gives MAE's 75 % grid).  The offset (oy, ox) is
    random per image when ``random_offset`` else (0, 0).  When the grid does
    not divide the patch grid, the visible count is made exact as everywhere
    else: ranking = noise / 2 + (1 - on_grid), the K = int(L (1 - r)) lowest
    are kept.
    """

    def __init__(self,
                 stride: int = 2,
                 random_offset: bool = True,
                 init_cfg=None) -> None:
        if not isinstance(stride, int) or stride < 2:
            raise ValueError(f'stride must be an integer >= 2, got {stride!r}')
        super().__init__(mask_ratio=1 - 1 / stride**2, init_cfg=init_cfg)
        self.stride = stride
        self.random_offset = random_offset

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        B, L = tokens.shape[:2]
        h, w = _grid(context, L)
        dev = tokens.device
        s = self.stride
        if self.random_offset:
            offset = torch.randint(0, s, (B, 2, 1, 1), device=dev)
        else:
            offset = torch.zeros(B, 2, 1, 1, dtype=torch.long, device=dev)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        on_grid = ((rows % s == offset[:, 0]) & (cols % s == offset[:, 1]))
        noise = torch.rand(B, L, device=dev)
        ranking = noise / 2 + (~on_grid.flatten(1)).to(noise.dtype)
        return mask_from_ranking(ranking, self.num_keep(L))
