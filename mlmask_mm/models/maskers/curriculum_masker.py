"""CL-MAE's learnable masking module (Madan et al., WACV 2024, §3).

A small transformer reads the MAE's patch tokens (position embedding added,
detached: the masker never trains the MAE's embedding) after a learnable
token, and a LayerNorm → Linear(D, 1) → sigmoid head gives one score per
patch, s_i ∈ (0, 1), high = keep visible.  The mask keeps the
K = int(L (1 − r)) patches of highest score (deterministic top-k); the
scores are returned with it (``MaskResult.scores``, differentiable) for the
masking-module step of :class:`~mlmask_mm.models.algorithms.CLMAE`.
"""
from typing import Optional

import torch
from mmcv.cnn import build_norm_layer
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from torch import nn

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking


@MODELS.register_module()
class CurriculumMasker(BaseMasker):
    """Transformer masking module: tokens → per-patch keep scores → top-k.

    Args:
        embed_dims: width of the module (published: the encoder's width).
        num_layers: transformer blocks (published: 5).
        num_heads: attention heads of each block.
        feedforward_channels: hidden width of the blocks' MLPs
            (default 4 · embed_dims).
        in_channels: width of the incoming patch tokens when it differs
            from ``embed_dims`` (a linear projection is added: a narrower,
            cheaper module).  Default: equal to ``embed_dims``.
        mask_ratio: r, the share of masked patches.
        norm_cfg: normalisation of the blocks and of the score head.
    """

    def __init__(self,
                 embed_dims: int = 768,
                 num_layers: int = 5,
                 num_heads: int = 12,
                 feedforward_channels: Optional[int] = None,
                 in_channels: Optional[int] = None,
                 mask_ratio: float = 0.75,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg=None) -> None:
        super().__init__(mask_ratio=mask_ratio, init_cfg=init_cfg)
        in_channels = in_channels or embed_dims
        self.in_proj = nn.Identity() if in_channels == embed_dims else \
            nn.Linear(in_channels, embed_dims)
        self.token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.layers = nn.ModuleList([
            TransformerEncoderLayer(
                embed_dims,
                num_heads,
                feedforward_channels or 4 * embed_dims,
                qkv_bias=True,
                norm_cfg=norm_cfg) for _ in range(num_layers)
        ])
        self.ln = build_norm_layer(norm_cfg, embed_dims)[1]
        self.score_head = nn.Linear(embed_dims, 1)

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.normal_(self.token, std=.02)

    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        """B x L x D patch tokens → B x L keep scores s ∈ (0, 1)."""
        x = self.in_proj(tokens.detach())
        x = torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)
        for layer in self.layers:
            x = layer(x)
        logits = self.score_head(self.ln(x[:, 1:]))  # drop the token
        return torch.sigmoid(logits.squeeze(-1).float())

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        scores = self.score(tokens)
        # keep the highest scores: rank by −s (smallest ranking = kept)
        return mask_from_ranking(-scores.detach(),
                                 self.num_keep(tokens.shape[1]), scores)

    def extra_repr(self) -> str:
        return f'mask_ratio={self.mask_ratio}, num_layers={len(self.layers)}'
