"""MAE whose masking is delegated to a masker (the one masking interface).

He et al., "Masked Autoencoders Are Scalable Vision Learners", §3: encode the
visible patches only, decode all L with mask tokens, loss on masked patches

    L = Σ_i m_i ℓ_i / Σ_i m_i,   ℓ_i = mean_pixels (x̂_i − norm(x_i))².

Here the mask m comes from ``self.masker`` (random by default) and everything
else is mmpretrain's MAE (backbone, decoder neck, pixel head).
"""
import copy
import inspect
import logging
from typing import Dict, List, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmpretrain.models.selfsup.mae import MAE
from mmpretrain.structures import DataSample
from torch import nn

from mlmask_mm.registry import MODELS
from ..maskers.base import BaseMasker, MaskContext, MaskResult
from ..utils.mask_specificity import mask_specificity


@MODELS.register_module()
class MaskedMAE(MAE):
    """mmpretrain's MAE with a pluggable masker.

    Args:
        backbone: a :class:`MaskableViT` config (``type='MaskableViT'``).
        neck, head: as mmpretrain's MAE (``MAEPretrainDecoder``,
            ``MAEPretrainHead``).
        masker: any registered masker (a config or a module); see
            :meth:`build_masker`.  Default: ``RandomMasker`` with the
            backbone's ``mask_ratio``.
        compile: ``True`` or a dict of ``torch.compile`` kwargs to compile the
            encoder and decoder blocks (the masker stays eager).
        **kwargs: the rest of ``BaseSelfSupervisor``'s arguments.

    Subclasses choose their masker through :attr:`default_masker`,
    :meth:`masker_defaults` and :meth:`check_masker`, never by replacing
    ``self.masker`` after this constructor.
    """

    #: the masker config used when ``model.masker`` is not given, and the
    #: ``type`` of a masker config that names none (``None``: required)
    default_masker: Optional[dict] = dict(type='RandomMasker')

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
        self.masker = self.build_masker(masker)
        if compile:
            self._compile(compile if isinstance(compile, dict) else {})

    # ------------------------------------------------------------------
    # the masker: built here only, the one owner of the mask ratio
    # ------------------------------------------------------------------
    def masker_defaults(self) -> dict:
        """Backbone values for the masker arguments a config leaves out
        (filled only where the masker's ``__init__`` names the argument).
        Subclasses add what their masker takes from the backbone."""
        return dict(mask_ratio=self.backbone.mask_ratio)

    def check_masker(self, masker: nn.Module) -> None:
        """Raise if this algorithm cannot train with ``masker``."""

    def build_masker(self, masker: Optional[Union[dict, nn.Module]]
                     ) -> nn.Module:
        """The algorithm's masker, from ``model.masker``.

        ``None`` → :attr:`default_masker`; a config without ``type`` gets
        the default's; arguments the config leaves out come from
        :meth:`masker_defaults`.  The masker owns the mask ratio: the
        backbone's ``mask_ratio`` (used only by ``MaskableViT.forward``'s
        mmpretrain path) is set to the masker's, with a warning when they
        differ.
        """
        name = type(self).__name__
        if masker is None and self.default_masker is None:
            raise ValueError(f'{name} needs model.masker (it has no default '
                             'masker)')
        if not isinstance(masker, nn.Module):
            cfg = {**copy.deepcopy(self.default_masker or {}),
                   **copy.deepcopy(dict(masker or {}))}
            with DefaultScope.overwrite_default_scope('mlmask_mm'):
                cls = MODELS.get(cfg['type']) if cfg.get('type') else None
                if cls is None:
                    raise ValueError(f'model.masker.type={cfg.get("type")!r}'
                                     ' is not a registered masker')
                named = inspect.signature(cls.__init__).parameters
                for key, value in self.masker_defaults().items():
                    if key in named and key not in cfg:
                        cfg[key] = value
                masker = MODELS.build(cfg)
        self.check_masker(masker)
        ratio = getattr(masker, 'mask_ratio', None)
        if ratio is not None and self.backbone.mask_ratio != ratio:
            print_log(
                f'model.backbone.mask_ratio={self.backbone.mask_ratio} is '
                f'replaced by the masker\'s mask_ratio={ratio}: the masker '
                'decides the mask', logger='current', level=logging.WARNING)
            self.backbone.mask_ratio = ratio
        return masker

    def _compile(self, kwargs: dict) -> None:
        """Compile each transformer block (shapes are static per run).

        In place (``nn.Module.compile``): the module tree and the state-dict
        keys stay those of the eager model, so mmengine's ``init_weights``
        and checkpoints work as without it (a ``torch.compile`` wrapper
        broke ``init_weights`` on the first GPU run).
        """
        for blocks in (self.backbone.layers,
                       getattr(self.neck, 'decoder_blocks', [])):
            for block in blocks:
                block.compile(**kwargs)

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

    def per_patch_loss(self, pred: torch.Tensor,
                       inputs: torch.Tensor) -> torch.Tensor:
        """ℓ_i: the head's pixel loss per patch (B x L), in float32 (or
        float64 for a float64 model)."""
        target = self.head.construct_target(inputs)
        criterion = self.head.loss_module
        dtype = torch.promote_types(pred.dtype, torch.float32)
        loss = criterion.penalty(pred.to(dtype), target.to(dtype))
        return loss.mean(dim=-1) / criterion.channel

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        tokens, result = self.mask(inputs, data_samples)
        pred = self.reconstruct(tokens, result)
        # logged, not optimised (no grad): how image-specific the masks are
        return dict(loss=self.head.loss(pred, inputs, result.mask),
                    mask_specificity=mask_specificity(result.mask))

    @torch.no_grad()
    def predict_masks(self, inputs: torch.Tensor,
                      data_samples: Optional[List[DataSample]] = None):
        """Masks and reconstructions for pictures: (mask, pred pixels).

        ``pred`` is B x L x p²·3 in the head's target space (normalised per
        patch when ``norm_pix``); see :func:`mlmask_mm.visualization`.
        """
        tokens, result = self.mask(inputs, data_samples)
        return result, self.reconstruct(tokens, result)
