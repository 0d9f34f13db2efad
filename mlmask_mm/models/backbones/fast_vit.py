"""``MaskableViT`` whose pre-training encoder runs fused and compiled whole.

Same modules, parameters, state-dict keys and ``init_weights`` as
``MaskableViT`` / mmpretrain's ``MAEViT`` (checkpoints load both ways, and in
mmseg / mmdet through the converter); only :meth:`encode_visible`, the
encoder of every training step (MAE §3: the visible tokens only), is
replaced by :func:`~.fast_blocks.fast_layers` over gather → class token →
blocks → final norm, which ``torch.compile`` takes as one graph
(``fullgraph=True``; masking by gather keeps the shapes static).
:meth:`walk` (per-block outputs, attention, used by Self-Guided MAE's
relevance and the analysis tools) and ``forward(mask=False)`` stay the eager
modules.
"""
from typing import Optional, Union

import torch

from mlmask_mm.registry import MODELS
from ..utils.fast_blocks import (CompiledForward, check_fast_layers,
                                 fast_layers, refuse_block_compile)
from .maskable_vit import MaskableViT


def _encode_visible(vit: 'FastMAEViT', tokens: torch.Tensor,
                    ids_keep: Optional[torch.Tensor]) -> torch.Tensor:
    D = tokens.shape[-1]
    x = tokens if ids_keep is None else torch.gather(
        tokens, dim=1, index=ids_keep.unsqueeze(-1).expand(-1, -1, D))
    cls_token = vit.cls_token + vit.pos_embed[:, :1, :]
    x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)
    return vit.norm1(fast_layers(x, vit.layers))


@MODELS.register_module()
class FastMAEViT(MaskableViT):
    """The fast path of ``MaskableViT`` (a config switch:
    ``model.backbone.type='FastMAEViT'``).

    Args:
        compile: ``'cuda'`` (default: ``torch.compile`` the encoder whole
            when it runs on a GPU, eager on the CPU), ``True`` (always) or
            ``False`` (never).
        **kwargs: ``MaskableViT`` / ``MAEViT`` arguments; dropout,
            stochastic depth and layer scale must be 0 (checked).
    """

    def __init__(self, *args, compile: Union[bool, str] = 'cuda',
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        check_fast_layers(self.layers, 'model.backbone.layers')
        self._encode = CompiledForward(_encode_visible, compile,
                                       'model.backbone.compile')

    def encode_visible(self, tokens: torch.Tensor,
                       ids_keep: Optional[torch.Tensor]) -> torch.Tensor:
        refuse_block_compile(self.layers, 'model.backbone')
        return self._encode(self, tokens, ids_keep)
