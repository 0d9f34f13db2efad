"""ViTDet's plain backbone: mmpretrain's ``ViTSAM`` with ViTDet's block.

Li et al., "Exploring Plain Vision Transformer Backbones for Object
Detection" (ViTDet), §3 / A.2; official code detectron2
``projects/ViTDet`` (``modeling/backbone/vit.py``), ported as mmdet
``projects/ViTDet/vitdet/vit.py``.  A pretrained plain ViT-B/16 with

* windowed attention (windows of 14 x 14 patches) in every block but the
  global blocks 2, 5, 8, 11, where attention is global;
* decomposed relative positions (MViTv2) in every block: the attention
  logits get ``q·R_h[i_h - j_h] + q·R_w[i_w - j_w]``, ``rel_pos_h/w``
  initialised to 0 (absent from the MAE checkpoint);
* the absolute position embedding kept at the pretraining grid (14 x 14 for
  224 px) and interpolated (bicubic) to the image's grid in every forward;
* no class token, no final norm: the stride-16 map of the last block feeds
  the simple feature pyramid;
* stochastic depth on both residual branches.

mmpretrain's ``ViTSAM`` (SAM's encoder follows ViTDet's design) has the
windows, global blocks and relative positions; it differs in the last two
points (its attention branch has no stochastic depth; it learns the position
embedding at the full 64 x 64 grid) and ends with SAM's channel reduction.
This class changes exactly those: ``out_channels=0`` (no reduction), the
block's attention branch gets ``DropPath``, the position embedding lives at
``pretrain_img_size``.  Keys are ViTSAM's (``layers.N.attn.qkv``,
``layers.N.attn.rel_pos_h`` ...): ``tools/model_converters/mlmask2backbone.py
--target vitdet`` writes them from any checkpoint of this package.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmengine.logging import MMLogger
from mmpretrain.models.backbones.vit_sam import (TransformerEncoderLayer,
                                                 ViTSAM, window_partition,
                                                 window_unpartition)
from mmpretrain.models.utils import resize_pos_embed

from mlmask_mm.registry import MODELS


class ViTDetLayer(TransformerEncoderLayer):
    """ViTSAM's block with stochastic depth on the attention branch too:
    ``x + DropPath(Attn(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``
    (detectron2 ``Block.forward``; the MLP's DropPath is the FFN's own)."""

    def __init__(self, *args, drop_path_rate: float = 0., **kwargs):
        super().__init__(*args, drop_path_rate=drop_path_rate, **kwargs)
        self.drop_path = (DropPath(drop_path_rate)
                          if drop_path_rate > 0 else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.ln1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        x = shortcut + self.drop_path(x)
        return self.ffn(self.ln2(x), identity=x)


@MODELS.register_module()
class ViTDet(ViTSAM):
    """ViTDet's backbone (see the module docstring).

    Args:
        arch: ``'base'`` / ``'large'`` / ``'huge'`` (ViTSAM's, with the global
            blocks 2, 5, 8, 11 for base) or a dict with ``embed_dims``,
            ``num_layers``, ``num_heads``, ``feedforward_channels``,
            ``global_attn_indexes``.
        img_size: training image size (1024 for LSJ); sets the size of the
            global blocks' relative position tables.
        pretrain_img_size: image size of pretraining (224): the grid at which
            the absolute position embedding is kept.
        window_size: window of the windowed blocks, in patches (14).
        drop_path_rate: stochastic depth of the last block, linear from 0.
        **kwargs: ViTSAM's other arguments (``patch_size``, ``out_indices``,
            ``norm_cfg``, ``init_cfg`` ...).
    """

    def __init__(self,
                 arch='base',
                 img_size: int = 1024,
                 patch_size: int = 16,
                 pretrain_img_size: int = 224,
                 window_size: int = 14,
                 drop_path_rate: float = 0.1,
                 qkv_bias: bool = True,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        for name in ('out_channels', 'out_type', 'use_abs_pos', 'use_rel_pos'):
            if name in kwargs:
                raise ValueError(
                    f'ViTDet fixes {name} (no channel reduction, feature '
                    'maps, absolute and relative positions): drop '
                    f'{name}={kwargs[name]!r}')
        if pretrain_img_size % patch_size:
            raise ValueError(
                f'pretrain_img_size={pretrain_img_size} is not a multiple of '
                f'patch_size={patch_size}')
        super().__init__(
            arch=arch, img_size=img_size, patch_size=patch_size,
            out_channels=0, out_type='featmap', drop_path_rate=0.,
            qkv_bias=qkv_bias, use_abs_pos=True, use_rel_pos=True,
            window_size=window_size, norm_cfg=norm_cfg, init_cfg=init_cfg,
            **kwargs)
        settings = self.arch_settings
        rates = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.layers = nn.ModuleList(
            ViTDetLayer(
                embed_dims=self.embed_dims,
                num_heads=settings['num_heads'],
                feedforward_channels=settings['feedforward_channels'],
                drop_path_rate=rates[i],
                qkv_bias=qkv_bias,
                window_size=(0 if i in self.global_attn_indexes else
                             window_size),
                input_size=self.patch_resolution,
                use_rel_pos=True,
                norm_cfg=norm_cfg) for i in range(self.num_layers))
        # the position embedding at the pretraining grid; ViTSAM.forward
        # interpolates it from self.patch_resolution to the input's grid
        grid = pretrain_img_size // patch_size
        self.patch_resolution = (grid, grid)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, grid, grid, self.embed_dims))

    def _prepare_pos_embed(self, state_dict, prefix, *args, **kwargs):
        """A checkpoint's position grid other than ``pretrain_img_size``'s
        is interpolated (bicubic) to it when loading."""
        name = prefix + 'pos_embed'
        if name not in state_dict or state_dict[name].shape == \
                self.pos_embed.shape:
            return
        ckpt = state_dict[name]
        if ckpt.dim() != 4 or ckpt.shape[-1] != self.embed_dims:
            return  # the shape mismatch is reported by load_state_dict
        MMLogger.get_current_instance().info(
            f'Resize the pos_embed shape from {tuple(ckpt.shape)} to '
            f'{tuple(self.pos_embed.shape)}.')
        resized = resize_pos_embed(
            ckpt.flatten(1, 2), tuple(ckpt.shape[1:3]),
            self.patch_resolution, self.interpolate_mode, 0)
        state_dict[name] = resized.view(1, *self.patch_resolution,
                                        self.embed_dims)
