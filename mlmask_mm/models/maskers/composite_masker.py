"""Combine maskers from a config: switch between them or sample one."""
from typing import List, Optional, Sequence

import torch
from torch import nn

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult


@MODELS.register_module()
class CompositeMasker(BaseMasker):
    """Delegate each batch to one of several maskers.

    ``mode='switch'``: use ``maskers[active]``; ``active`` is a buffer (saved
    in checkpoints) that a hook or an algorithm changes with
    :meth:`set_active` (e.g. a curriculum of masking strategies).  ``mode='random'``: pick masker i with probability
    ``probs[i]`` for each batch.  All sub-maskers must share one mask ratio.
    """

    def __init__(self,
                 maskers: List[dict],
                 mode: str = 'switch',
                 active: int = 0,
                 probs: Optional[Sequence[float]] = None,
                 init_cfg=None) -> None:
        built = [m if isinstance(m, nn.Module) else MODELS.build(m)
                 for m in maskers]
        if not built:
            raise ValueError('CompositeMasker needs at least one masker')
        ratios = {m.mask_ratio for m in built}
        if len(ratios) != 1:
            raise ValueError(
                f'CompositeMasker: sub-maskers disagree on mask_ratio {ratios}')
        super().__init__(mask_ratio=ratios.pop(), init_cfg=init_cfg)
        if mode not in ('switch', 'random'):
            raise ValueError(f"mode must be 'switch' or 'random', got {mode!r}")
        self.maskers = nn.ModuleList(built)
        self.mode = mode
        self.register_buffer('active', torch.tensor(int(active)))
        self.set_active(int(active))
        if mode == 'random':
            probs = probs or [1 / len(built)] * len(built)
            if len(probs) != len(built) or abs(sum(probs) - 1) > 1e-6:
                raise ValueError(f'probs {probs} must have one entry per '
                                 'masker and sum to 1')
            self.register_buffer('probs', torch.tensor(probs))

    def set_active(self, index: int) -> None:
        if not 0 <= index < len(self.maskers):
            raise ValueError(f'active must index one of the '
                             f'{len(self.maskers)} maskers, got {index}')
        self.active.fill_(index)

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        if self.mode == 'random':
            index = int(torch.multinomial(self.probs, 1))
        else:
            index = int(self.active)
        return self.maskers[index](tokens, images, context)
