"""Multi-scale maps from one plain-ViT map (ViTDet's simple feature pyramid).

Li et al., "Exploring Plain Vision Transformer Backbones for Object
Detection" (ViTDet), §3 "Simple feature pyramid": only the last stride-16
map F (C channels) of a plain ViT is used, and each level is built from it
alone, without top-down or lateral connections:

    scale 4   (stride 4):  deconv2x2/2 → LN → GELU → deconv2x2/2  (C/4 ch)
    scale 2   (stride 8):  deconv2x2/2                             (C/2 ch)
    scale 1   (stride 16): F                                       (C ch)
    scale 1/2 (stride 32): maxpool2x2/2                            (C ch)

then per level conv1x1 → LN → conv3x3 → LN to ``out_channels``.  With
``num_outs`` > number of scales, extra levels are max-pooled (kernel 1,
stride 2) from the last one, as mmdet's FPN does for the RPN's stride-64
level.  LN is a LayerNorm over channels (``LayerNorm2d``).
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.utils import LayerNorm2d

from mlmask_mm.registry import MODELS

_SCALES = (4.0, 2.0, 1.0, 0.5)


def _rescale(scale: float, channels: int) -> Tuple[nn.Module, int]:
    """The resampling stage of one level and its output channels."""
    if scale == 4.0:
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
            LayerNorm2d(channels // 2, eps=1e-6), nn.GELU(),
            nn.ConvTranspose2d(channels // 2, channels // 4, 2,
                               stride=2)), channels // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels // 2, 2,
                                  stride=2), channels // 2
    if scale == 1.0:
        return nn.Identity(), channels
    return nn.MaxPool2d(2, stride=2), channels


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """ViTDet's simple feature pyramid (§3) as an mmdet/mmseg neck.

    Args:
        in_channels: channels C of the ViT map (its ``embed_dims``).
        out_channels: channels of every output level.
        scale_factors: resampling of each level relative to the input map,
            a subset of (4, 2, 1, 0.5), in decreasing order.
        num_outs: number of outputs; levels beyond ``len(scale_factors)``
            are max-pooled from the previous one (stride 2 each).

    Input: the backbone's tuple of maps; only the last (B x C x h x w, the
    stride-16 map) is used.  Output: ``num_outs`` maps B x out_channels x
    (h·s) x (w·s).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = _SCALES,
                 num_outs: int = 5,
                 init_cfg=dict(
                     type='Xavier', layer=['Conv2d', 'ConvTranspose2d'],
                     distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        scale_factors = tuple(float(s) for s in scale_factors)
        bad = [s for s in scale_factors if s not in _SCALES]
        if bad or not scale_factors or list(scale_factors) != sorted(
                scale_factors, reverse=True):
            raise ValueError(
                f'scale_factors={scale_factors} must be a decreasing subset '
                f'of {_SCALES}')
        if in_channels % 4:
            raise ValueError(
                f'in_channels={in_channels} must be divisible by 4 (the '
                'stride-4 level has in_channels // 4 channels)')
        if num_outs < len(scale_factors):
            raise ValueError(
                f'num_outs={num_outs} is smaller than the '
                f'{len(scale_factors)} scale_factors={scale_factors}')
        self.in_channels = in_channels
        self.scale_factors = scale_factors
        self.num_outs = num_outs
        self.levels = nn.ModuleList()
        for scale in scale_factors:
            rescale, channels = _rescale(scale, in_channels)
            self.levels.append(nn.Sequential(
                rescale,
                nn.Conv2d(channels, out_channels, 1, bias=False),
                LayerNorm2d(out_channels, eps=1e-6),
                nn.Conv2d(out_channels, out_channels, 3, padding=1,
                          bias=False),
                LayerNorm2d(out_channels, eps=1e-6)))

    def forward(self, inputs: Sequence[torch.Tensor]
                ) -> Tuple[torch.Tensor, ...]:
        x = inputs[-1] if isinstance(inputs, (list, tuple)) else inputs
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                'SimpleFeaturePyramid expects the backbone to end with a '
                f'B x {self.in_channels} x h x w map (e.g. mmpretrain\'s '
                "VisionTransformer with out_type='featmap'), got "
                f'{tuple(x.shape)}')
        outs = [level(x) for level in self.levels]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
