"""mmpretrain's ``MAEPretrainDecoder`` with fused blocks, compiled whole.

He et al., MAE §3 ("MAE decoder"): embed the encoded visible tokens, append
mask tokens, unshuffle with ``ids_restore``, add the position embedding,
run the blocks, norm, predict pixels, drop the class token.  The same
modules, parameters and state-dict keys as ``MAEPretrainDecoder``
(``mmpretrain/models/necks/mae_neck.py``); the forward is one function over
the parameters (:func:`~mlmask_mm.models.utils.fast_blocks.fast_layers`)
that ``torch.compile`` takes as one graph.
"""
from typing import Union

import torch
import torch.nn.functional as F
from mmpretrain.models.necks import MAEPretrainDecoder

from mlmask_mm.registry import MODELS
from ..utils.fast_blocks import (CompiledForward, check_fast_layers,
                                 fast_layers, refuse_block_compile)


def _decode(neck: 'FastMAEPretrainDecoder', x: torch.Tensor,
            ids_restore: torch.Tensor) -> torch.Tensor:
    x = F.linear(x, neck.decoder_embed.weight, neck.decoder_embed.bias)
    B, K1, C = x.shape
    mask_tokens = neck.mask_token.expand(B, ids_restore.shape[1] + 1 - K1,
                                         -1)
    x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
    x_ = torch.gather(x_, dim=1,
                      index=ids_restore.unsqueeze(-1).expand(-1, -1, C))
    x = torch.cat([x[:, :1, :], x_], dim=1) + neck.decoder_pos_embed
    x = neck.decoder_norm(fast_layers(x, neck.decoder_blocks))
    # the class token's prediction is dropped: project the patches only
    return F.linear(x[:, 1:, :], neck.decoder_pred.weight,
                    neck.decoder_pred.bias)


@MODELS.register_module()
class FastMAEPretrainDecoder(MAEPretrainDecoder):
    """The fast path of ``MAEPretrainDecoder`` (a config switch:
    ``model.neck.type='FastMAEPretrainDecoder'``).

    Args:
        compile: ``'cuda'`` (default: ``torch.compile`` the decoder whole on
            a GPU, eager on the CPU), ``True`` or ``False``.
        **kwargs: ``MAEPretrainDecoder``'s arguments.
    """

    def __init__(self, *args, compile: Union[bool, str] = 'cuda',
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        check_fast_layers(self.decoder_blocks, 'model.neck.decoder_blocks')
        self._decode = CompiledForward(_decode, compile,
                                       'model.neck.compile')

    def forward(self, x: torch.Tensor,
                ids_restore: torch.Tensor) -> torch.Tensor:
        refuse_block_compile(self.decoder_blocks, 'model.neck')
        return self._decode(self, x, ids_restore)
