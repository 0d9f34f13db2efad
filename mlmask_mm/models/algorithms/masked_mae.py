"""MAE whose masking is delegated to a masker (the one masking interface).

He et al., "Masked Autoencoders Are Scalable Vision Learners", §3: encode the
visible patches only, decode all L with mask tokens, loss on masked patches

    L = Σ_i m_i ℓ_i / Σ_i m_i,   ℓ_i = mean_pixels (x̂_i − norm(x_i))².

Here the mask m comes from ``self.masker`` (random by default) and everything
else is mmpretrain's MAE (backbone, decoder neck, pixel head).
"""
from typing import Dict, List, Optional, Union

import logging

import torch
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmpretrain.models.selfsup.mae import MAE
from mmpretrain.structures import DataSample

from mlmask_mm.registry import MODELS
from ..maskers.base import BaseMasker, MaskContext, MaskResult


@MODELS.register_module()
class MaskedMAE(MAE):
    """mmpretrain's MAE with a pluggable masker.

    Args:
        backbone: a :class:`MaskableViT` config (``type='MaskableViT'``).
        neck, head: as mmpretrain's MAE (``MAEPretrainDecoder``,
            ``MAEPretrainHead``).
        masker: any registered masker; defaults to ``RandomMasker`` with the
            backbone's ``mask_ratio``.  The masker's ratio is the one used
            (the backbone's is set to it, with a warning when they differ).
        compile: ``True`` or a dict of ``torch.compile`` kwargs to compile the
            encoder and decoder blocks (the masker stays eager).
        **kwargs: the rest of ``BaseSelfSupervisor``'s arguments.
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 masker: Optional[Union[dict, BaseMasker]] = None,
                 compile: Union[bool, dict] = False,
                 **kwargs) -> None:
        # build the parts in this package's scope (its registry falls back to
        # mmpretrain's), also when the config's default scope is another one
        with DefaultScope.overwrite_default_scope('mlmask_mm'):
            super().__init__(backbone=backbone, neck=neck, head=head,
                             **kwargs)
        if not hasattr(self.backbone, 'encode_visible'):
            raise TypeError(
                'MaskedMAE needs a backbone with embed()/encode_visible() '
                f'such as MaskableViT, got {type(self.backbone).__name__}')
        if masker is None:
            masker = dict(
                type='RandomMasker', mask_ratio=self.backbone.mask_ratio)
        self.masker = masker if isinstance(masker,
                                           BaseMasker) else MODELS.build(masker)
        if self.backbone.mask_ratio != self.masker.mask_ratio:
            print_log(
                f'model.backbone.mask_ratio={self.backbone.mask_ratio} is '
                f'replaced by the masker\'s mask_ratio='
                f'{self.masker.mask_ratio}: the masker decides the mask',
                logger='current', level=logging.WARNING)
            self.backbone.mask_ratio = self.masker.mask_ratio
        if compile:
            self._compile(compile if isinstance(compile, dict) else {})

    def _compile(self, kwargs: dict) -> None:
        """Compile each transformer block (shapes are static per run)."""
        for blocks in (self.backbone.layers,
                       getattr(self.neck, 'decoder_blocks', [])):
            for i, block in enumerate(blocks):
                blocks[i] = torch.compile(block, **kwargs)

    def mask_context(self, data_samples: Optional[List[DataSample]]
                     ) -> MaskContext:
        return MaskContext(
            patch_resolution=tuple(self.backbone.patch_resolution),
            data_samples=data_samples)

    def mask(self, inputs: torch.Tensor,
             data_samples: Optional[List[DataSample]] = None):
        """Embed the images and ask the masker: (tokens, MaskResult)."""
        tokens = self.backbone.embed(inputs)
        result = self.masker(tokens, inputs, self.mask_context(data_samples))
        return tokens, result

    def reconstruct(self, tokens: torch.Tensor,
                    result: MaskResult) -> torch.Tensor:
        """Encoder on the visible tokens, decoder on all: B x L x p²·3."""
        latent = self.backbone.encode_visible(tokens, result.ids_keep)
        return self.neck(latent, result.ids_restore)

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        tokens, result = self.mask(inputs, data_samples)
        pred = self.reconstruct(tokens, result)
        return dict(loss=self.head.loss(pred, inputs, result.mask))

    @torch.no_grad()
    def predict_masks(self, inputs: torch.Tensor,
                      data_samples: Optional[List[DataSample]] = None):
        """Masks and reconstructions for pictures: (mask, pred pixels).

        ``pred`` is B x L x p²·3 in the head's target space (normalised per
        patch when ``norm_pix``); see :func:`mlmask_mm.visualization`.
        """
        tokens, result = self.mask(inputs, data_samples)
        return result, self.reconstruct(tokens, result)
