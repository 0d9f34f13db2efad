"""CL-MAE's learnable masking module (Madan et al., WACV 2024, §3).

A small transformer reads the MAE's patch tokens (position embedding added,
detached: the masker never trains the MAE's embedding) after a learnable
token and gives one keep score per patch, s_i ∈ (0, 1), high = keep
visible.  Two scoring heads (docs/cl_mae.md):

* ``head='token'`` (published, the official code's ``MaskingNet``):
  LayerNorm → Linear(D, L) → sigmoid on the learnable token's output, all L
  scores at once; the module is built for one number of patches L;
* ``head='patch'``: LayerNorm → Linear(D, 1) → sigmoid on every patch
  token's output (the token is discarded); any L.

The mask keeps the K = int(L (1 − r)) patches of highest score
(deterministic top-k); the scores are returned with it
(``MaskResult.scores``, differentiable) for the masking-module step of
:class:`~mlmask_mm.models.algorithms.CLMAE`.  The score head runs in
float32 also under autocast: bf16 has 8 bits of mantissa, ties between
close scores would make the top-k pick by patch index.
"""
from typing import Optional

import torch
from mmcv.cnn import build_norm_layer
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from torch import nn

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking

HEADS = ('token', 'patch')


@MODELS.register_module()
class CurriculumMasker(BaseMasker):
    """Transformer masking module: tokens → per-patch keep scores → top-k.

    Args:
        embed_dims: width of the module (published: the encoder's width).
        num_layers: transformer blocks (published: 5).
        num_heads: attention heads of each block (published: 4 at every
            model size).
        num_patches: L, the number of patches; needed by ``head='token'``
            (its Linear(D, L)), checked against the input by both heads.
        head: ``'token'`` (published) or ``'patch'`` (see the module doc).
        feedforward_channels: hidden width of the blocks' MLPs
            (default 4 · embed_dims, as published).
        in_channels: width of the incoming patch tokens when it differs
            from ``embed_dims`` (a linear projection is added: a narrower,
            cheaper module).  Default: equal to ``embed_dims``.
        mask_ratio: r, the share of masked patches.
        norm_cfg: normalisation of the blocks and of the score head
            (official ``MaskingNet``: ``nn.LayerNorm``'s default eps 1e-5;
            the MAE's own norms use 1e-6).
    """

    def __init__(self,
                 embed_dims: int = 768,
                 num_layers: int = 5,
                 num_heads: int = 4,
                 num_patches: Optional[int] = None,
                 head: str = 'token',
                 feedforward_channels: Optional[int] = None,
                 in_channels: Optional[int] = None,
                 mask_ratio: float = 0.75,
                 norm_cfg: dict = dict(type='LN', eps=1e-5),
                 init_cfg=None) -> None:
        super().__init__(mask_ratio=mask_ratio, init_cfg=init_cfg)
        if head not in HEADS:
            raise ValueError(f'CurriculumMasker: head must be one of {HEADS}, '
                             f'got {head!r}')
        if head == 'token' and not num_patches:
            raise ValueError(
                "CurriculumMasker(head='token') (the published head, "
                'Linear(D, L) on the learnable token) needs num_patches=L, '
                '(img_size // patch_size)**2; got num_patches='
                f"{num_patches!r} (or use head='patch')")
        self.head = head
        self.num_patches = num_patches
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
        self.score_head = nn.Linear(embed_dims,
                                    num_patches if head == 'token' else 1)

    def init_weights(self) -> None:
        """As the official ``MaskingNet``: Xavier-uniform linear layers with
        zero bias, LayerNorms (1, 0), the token N(0, 0.02²)."""
        super().init_weights()
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.token, std=.02)

    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        """B x L x D patch tokens → B x L keep scores s ∈ (0, 1), float32."""
        L = tokens.shape[1]
        if self.num_patches is not None and L != self.num_patches:
            raise ValueError(
                f'CurriculumMasker was built for num_patches='
                f'{self.num_patches} but gets {L} patch tokens: set '
                'model.masker.num_patches to (img_size // patch_size)**2')
        x = self.in_proj(tokens.detach())
        x = torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)
        for layer in self.layers:
            x = layer(x)
        x = x[:, :1] if self.head == 'token' else x[:, 1:]
        with torch.autocast(x.device.type, enabled=False):
            logits = self.score_head(self.ln(x.float()))
        # token: B x 1 x L -> B x L;  patch: B x L x 1 -> B x L
        return torch.sigmoid(logits.reshape(x.shape[0], L))

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        scores = self.score(tokens)
        # keep the highest scores: rank by −s (smallest ranking = kept)
        return mask_from_ranking(-scores.detach(),
                                 self.num_keep(tokens.shape[1]), scores)

    def extra_repr(self) -> str:
        return (f'mask_ratio={self.mask_ratio}, head={self.head!r}, '
                f'num_layers={len(self.layers)}')
