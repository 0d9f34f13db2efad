"""Self-Guided MAE's informed masks from a given relevance (Shin et al.,
NeurIPS 2024, §4); see docs/self_guided_mae.md.

The masker only ranks: :class:`~mlmask_mm.models.algorithms.SelfGuidedMAE`
computes the relevance S (B x L) of every patch and passes it in an
:class:`InformedMaskContext` together with the current hint ratio h.  Then:

* masked = the num_mask = L − int(L (1 − r)) most relevant patches;
* hints: n = round(h · num_mask) of them (uniformly, or ∝ the given
  relevance with ``hint_mode='relevance'``; SelfGuidedMAE gives S
  normalised per image to [0, 1]) are revealed, and the n least relevant visible
  patches are masked instead, so every image keeps exactly num_mask masked.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking

HINT_MODES = ('uniform', 'relevance')


@dataclass
class InformedMaskContext(MaskContext):
    """A :class:`MaskContext` with what an informed masker ranks by.

    Attributes:
        importance: B x L relevance S of each patch (higher = masked first).
        hint_ratio: h, the share of the masked set revealed as hints.
    """
    importance: Optional[torch.Tensor] = None
    hint_ratio: float = 0.0


def informed_ranking(relevance: torch.Tensor, num_mask: int,
                     hint_ratio: float, hint_mode: str = 'uniform',
                     generator: Optional[torch.Generator] = None
                     ) -> torch.Tensor:
    """A B x L ranking whose L − num_mask smallest entries stay visible.

    Masked = the num_mask most relevant patches (ties broken at random),
    minus ``n_hint`` hints drawn among them (uniform, or ∝ relevance by
    Gumbel top-k), plus the ``n_hint`` least relevant visible patches.
    """
    B, L = relevance.shape
    # ties (e.g. a constant map where the Ncut found no split) are broken at
    # random, never by patch index: a stable sort of a random permutation
    perm = torch.rand(B, L, generator=generator).argsort(dim=-1).to(
        relevance.device)
    order = perm.gather(1, relevance.gather(1, perm).argsort(
        dim=-1, descending=True, stable=True))
    masked = torch.zeros(B, L, dtype=torch.bool, device=relevance.device)
    masked.scatter_(1, order[:, :num_mask], True)
    n_hint = min(int(round(hint_ratio * num_mask)), L - num_mask)
    if n_hint > 0:
        u = torch.rand(B, L, generator=generator,
                       dtype=relevance.dtype).to(relevance.device)
        key = -torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-12)))  # Gumbel
        if hint_mode == 'relevance':
            key = key + torch.log(relevance.clamp_min(1e-6))
        key = key.masked_fill(~masked, float('-inf'))
        hints = key.topk(n_hint, dim=-1).indices
        masked.scatter_(1, hints, False)
        fillers = order[:, num_mask:][:, -n_hint:]  # least relevant visible
        masked.scatter_(1, fillers, True)
    return masked.to(relevance.dtype)  # 1 = masked ranks last


@MODELS.register_module()
class SelfGuidedMasker(BaseMasker):
    """Exact-count informed masks with hints from a given relevance.

    Args:
        mask_ratio: r.
        hint_mode: ``'uniform'`` (the paper's best) or ``'relevance'``.
    """

    def __init__(self, mask_ratio: float = 0.75, hint_mode: str = 'uniform',
                 init_cfg=None) -> None:
        super().__init__(mask_ratio=mask_ratio, init_cfg=init_cfg)
        if hint_mode not in HINT_MODES:
            raise ValueError(f'SelfGuidedMasker: hint_mode must be one of '
                             f'{HINT_MODES}, got {hint_mode!r}')
        self.hint_mode = hint_mode

    def extra_repr(self) -> str:
        return f'mask_ratio={self.mask_ratio}, hint_mode={self.hint_mode!r}'

    @torch.no_grad()
    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        if not isinstance(context, InformedMaskContext) or \
                context.importance is None:
            raise ValueError(
                'SelfGuidedMasker ranks a given relevance: call it with an '
                'InformedMaskContext(importance=B x L, hint_ratio=h), as '
                'SelfGuidedMAE does')
        relevance = context.importance
        B, L = relevance.shape
        if tokens.shape[:2] != (B, L):
            raise ValueError(
                f'SelfGuidedMasker: relevance {tuple(relevance.shape)} does '
                f'not match the tokens {tuple(tokens.shape[:2])}')
        num_keep = self.num_keep(L)
        ranking = informed_ranking(relevance, L - num_keep,
                                   context.hint_ratio, self.hint_mode)
        return mask_from_ranking(ranking, num_keep, scores=relevance)
