"""The MAE encoder split into embed / encode so that a masker can sit between."""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmpretrain.models.selfsup.mae import MAEViT

from mlmask_mm.registry import MODELS
from ..utils.block_walk import BlockWalk, walk_blocks
from ..maskers.base import (check_mask_ratio, mask_from_ranking,
                            num_visible)


def check_patch_grid(img_size: Union[int, Sequence[int]],
                     patch_size: Union[int, Sequence[int]]) -> None:
    """Raise one clear error unless the image splits into whole patches."""
    sizes = (img_size, img_size) if isinstance(img_size, int) else img_size
    patches = (patch_size, patch_size) if isinstance(patch_size,
                                                     int) else patch_size
    for s, p in zip(sizes, patches):
        if s % p:
            raise ValueError(
                f'img_size={img_size} is not divisible by '
                f'patch_size={patch_size}: the image must split into whole '
                'patches')


@MODELS.register_module()
class MaskableViT(MAEViT):
    """mmpretrain's ``MAEViT`` with its masking step taken out.

    Same parameters and state-dict keys as ``MAEViT`` (checkpoints load both
    ways); ``forward(x, mask=None)`` still extracts features without masking.
    Pre-training calls :meth:`embed` → masker → :meth:`encode_visible`;
    :meth:`walk` is the one way to run the encoder over given tokens (all or
    the kept ones) with per-block outputs, attention or attention values.
    """

    def __init__(self, img_size=224, patch_size=16, **kwargs) -> None:
        check_patch_grid(img_size, patch_size)
        check_mask_ratio(kwargs.get('mask_ratio', 0.75), 'backbone.mask_ratio')
        super().__init__(img_size=img_size, patch_size=patch_size, **kwargs)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with position embedding: B x 3 x H x W → B x L x D."""
        H, W = images.shape[-2:]
        if (H, W) != tuple(self.img_size):
            raise ValueError(
                f'input images are {H}x{W} but the backbone was built with '
                f'img_size={tuple(self.img_size)}: set the crop/resize of the '
                'pipeline and model.backbone.img_size to the same size')
        x = self.patch_embed(images)[0]
        return x + self.pos_embed[:, 1:, :]

    def walk(self,
             tokens: torch.Tensor,
             ids_keep: Optional[torch.Tensor] = None,
             upto: Optional[int] = None,
             norm: Optional[bool] = None,
             return_blocks: bool = False,
             return_attention: bool = False,
             return_values: bool = False) -> BlockWalk:
        """Walk the encoder over ``tokens`` (B x L x D, from :meth:`embed`).

        Args:
            ids_keep: B x K indices of the tokens to keep (MAE's visible
                set); ``None`` walks all L tokens.
            upto: stop after this block (inclusive; negative counts from
                the end); ``None`` runs every block.
            norm: apply the final LayerNorm to ``output`` (default: only
                when every block ran).
            return_blocks / return_attention / return_values: see
                :class:`~mlmask_mm.models.utils.block_walk.BlockWalk`.

        Every tensor has the class token first: B x (K + 1) x D.
        """
        D = tokens.shape[-1]
        x = tokens if ids_keep is None else torch.gather(
            tokens, dim=1, index=ids_keep.unsqueeze(-1).expand(-1, -1, D))
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        walk = walk_blocks(self.layers, x, upto, return_blocks,
                           return_attention, return_values)
        if norm is None:
            norm = upto is None or upto % len(self.layers) == len(
                self.layers) - 1
        if norm:
            walk.output = self.norm1(walk.output)
        return walk

    def encode_visible(self, tokens: torch.Tensor,
                       ids_keep: Optional[torch.Tensor]) -> torch.Tensor:
        """MAE's encoder latent B x (K + 1) x D of the kept tokens
        (all tokens when ``ids_keep`` is ``None``)."""
        return self.walk(tokens, ids_keep).output

    def forward(self, x: torch.Tensor, mask: Optional[bool] = True
                ) -> Union[Tuple[torch.Tensor, ...], torch.Tensor]:
        if mask is None or mask is False:
            return super(MAEViT, self).forward(x)
        # mmpretrain's behaviour (random masking), through the split steps
        tokens = self.embed(x)
        B, L = tokens.shape[:2]
        noise = torch.rand(B, L, device=x.device)
        result = mask_from_ranking(noise, num_visible(L, self.mask_ratio))
        latent = self.encode_visible(tokens, result.ids_keep)
        return latent, result.mask, result.ids_restore
