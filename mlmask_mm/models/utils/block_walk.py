"""One walk over a stack of ViT blocks, with optional per-block records.

Every method that needs more than ``block(x)`` (all-token features,
attention maps, the attention output before its projection) goes through
:func:`walk_blocks`, in the spirit of timm's ``forward_intermediates``.
The blocks are mmpretrain's ``TransformerEncoderLayer``
(``x + attn(ln1(x))`` then ``ffn(ln2(x), identity=x)``), whose attention is

    A = softmax(q kᵀ / √d_h),   out = proj(A v)   (per head, then concat).

With no record asked for, each block runs as ``block(x)`` (compiled blocks
stay compiled); with one, the block is unrolled here with the same kernels
(SDPA for the output), so the output is the same either way.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn


@dataclass
class BlockWalk:
    """What :func:`walk_blocks` returns.

    Attributes:
        output: B x N x D, the last walked block's output.
        blocks: per walked block, its output (B x N x D) when asked for.
        attention: per walked block, the head-averaged attention
            A (B x N x N, rows sum to 1) when asked for.
        values: per walked block, the attention output before the
            projection, A(X W^V) with heads concatenated (B x N x D), when
            asked for (Self-Guided MAE's eq. 2 features).
    """
    output: Tensor
    blocks: List[Tensor] = field(default_factory=list)
    attention: List[Tensor] = field(default_factory=list)
    values: List[Tensor] = field(default_factory=list)


def _unrolled_block(block: nn.Module, x: Tensor, walk: BlockWalk,
                    attention: bool, values: bool) -> Tensor:
    """``block(x)`` step by step, recording A and/or A(XW^V)."""
    attn = block.attn
    if getattr(attn, 'input_dims', attn.embed_dims) != attn.embed_dims:
        raise ValueError('walk_blocks records attention only for blocks '
                         'whose attention keeps the embedding size')
    h = block.ln1(x)
    B, N, _ = h.shape
    qkv = attn.qkv(h).reshape(B, N, 3, attn.num_heads,
                              attn.head_dims).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    drop = attn.attn_drop if attn.training else 0.
    out = attn.scaled_dot_product_attention(q, k, v, dropout_p=drop)
    out = out.transpose(1, 2).reshape(B, N, attn.embed_dims)
    if attention:
        # mmpretrain scales by head_dims ** -0.5 on both of its paths
        weights = q.float() @ k.float().transpose(-2, -1) * attn.head_dims**-0.5
        walk.attention.append(weights.softmax(-1).mean(1))
    if values:
        walk.values.append(out)
    y = attn.out_drop(attn.gamma1(attn.proj_drop(attn.proj(out))))
    if attn.v_shortcut:
        y = v.squeeze(1) + y
    x = x + y
    return block.ffn(block.ln2(x), identity=x)


def walk_blocks(blocks: Sequence[nn.Module],
                x: Tensor,
                upto: Optional[int] = None,
                return_blocks: bool = False,
                return_attention: bool = False,
                return_values: bool = False) -> BlockWalk:
    """Run ``blocks[0..upto]`` (inclusive; negative counts from the end).

    Returns a :class:`BlockWalk`; records are kept for every walked block.
    """
    n = len(blocks)
    last = n - 1 if upto is None else upto % n if -n <= upto < n else None
    if last is None:
        raise ValueError(f'upto={upto} is not a block index of {n} blocks')
    walk = BlockWalk(output=x)
    unroll = return_attention or return_values
    for block in list(blocks)[:last + 1]:
        if unroll:
            x = _unrolled_block(block, x, walk, return_attention,
                                return_values)
        else:
            x = block(x)
        if return_blocks:
            walk.blocks.append(x)
    walk.output = x
    return walk


def walk_decoder(neck: nn.Module, latent: Tensor, ids_restore: Tensor,
                 return_attention: bool = False) -> BlockWalk:
    """mmpretrain's ``MAEPretrainDecoder.forward`` through :func:`walk_blocks`.

    ``output`` is the pixel prediction B x L x p²·3 (class token dropped),
    equal to ``neck(latent, ids_restore)``; ``attention`` holds each decoder
    block's B x (L+1) x (L+1) attention, class token first.
    """
    x = neck.decoder_embed(latent)
    D = x.shape[2]
    mask_tokens = neck.mask_token.repeat(
        x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D))
    x = torch.cat([x[:, :1, :], x_], dim=1) + neck.decoder_pos_embed
    walk = walk_blocks(neck.decoder_blocks, x,
                       return_attention=return_attention)
    walk.output = neck.decoder_pred(neck.decoder_norm(walk.output))[:, 1:, :]
    return walk
