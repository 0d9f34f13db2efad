"""CL-MAE: an MAE trained with a learned masking module and a curriculum.

Madan, Ristea, Nasrollahi, Moeslund, Ionescu, "CL-MAE: Curriculum-Learned
Masked Autoencoders", WACV 2024.  §3 of the paper, in the terms of this
package:

* the masking module (:class:`~mlmask_mm.models.maskers.CurriculumMasker`)
  scores every patch, s_i ∈ (0, 1), high = keep;
* every iteration trains in two steps (§3):

  1. **MAE step**, the module frozen: keep the top ⌊L(1 − r)⌋ patches by s,
     MAE's reconstruction loss on the masked ones, update the MAE;
  2. **masking-module step**, the MAE frozen, every
     ``masker_update_interval`` iterations: the *soft* full-token pass (all
     L tokens scaled by s_i through the encoder, the decoder without mask
     tokens) and

         L_mask = c(t) · L_rec^soft + λ_bin L_bin + λ_kl L_kl + λ_div L_div

     (:mod:`mlmask_mm.models.losses.cl_mae_losses`), update the module;

* c(t), the curriculum factor, goes from +1 (partner: the module helps the
  MAE, easy masks) to −1 (adversary: hard masks); it is the buffer
  ``curriculum_factor`` (saved in checkpoints) that
  :class:`~mlmask_mm.engine.hooks.CurriculumHook` sets every iteration.

The two steps have their own optimizers, ``optim_wrapper['mae']`` and
``optim_wrapper['masker']`` (an ``OptimWrapperDict``, built by
:class:`~mlmask_mm.engine.parts.PartsOptimWrapperConstructor` from the parts
``CLMAE`` declares), and neither touches the other's
parameters, gradients or optimizer state (as the official code under
torch ≥ 2.0; ``torch1_zero_grad=True`` gives the published runs' torch 1.x
behaviour, where the frozen part also takes an AdamW step on zero
gradients).
"""
from contextlib import contextmanager
from typing import Dict, Iterable, List, Optional, Union

import torch
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmpretrain.structures import DataSample
from torch import nn

from mlmask_mm.registry import MODELS
from mlmask_mm.utils.dist import average_over_ranks
from ..losses.cl_mae_losses import (masking_module_loss,
                                    soft_reconstruction_loss)
from ..maskers.base import BaseMasker, MaskResult
from ..utils.mask_specificity import mask_specificity
from .masked_mae import MaskedMAE


@MODELS.register_module()
class CLMAE(MaskedMAE):
    """MAE + learned masking module + curriculum (CL-MAE, WACV 2024, §3).

    Args:
        backbone, neck, head: as :class:`MaskedMAE` (``MaskableViT``,
            ``MAEPretrainDecoder``, ``MAEPretrainHead``).
        masker: the masking module; a ``CurriculumMasker`` config whose
            missing ``embed_dims`` / ``in_channels`` / ``num_patches`` /
            ``mask_ratio`` are the backbone's (published: 5 blocks at the
            encoder's width, 4 heads, ``head='token'``, Linear(D, L) on
            the learnable token).  Its ``mask_ratio`` is the one used.
        masker_update_interval: n, the masking-module step runs on the
            iterations i with i % n == 0 (n = 1: every iteration, as
            published; larger n trades curriculum speed for cost).
        masker_batch_size: the module step uses the first k images of the
            batch (default: all, as published); its soft pass runs the
            encoder on all L tokens, so it costs about k/B of a full one.
            Not published: L_kl (a sum over the batch) then weighs k/B of
            the published weight.
        soft_batch_size: the soft pass (the costly part of the module
            step) on the first k images of the module step's batch, while
            L_bin, L_kl and L_div see the scores of the whole batch
            (default: all, as published).
        reuse_module_forward: the module step reuses the scores (and the
            module's graph) of the MAE step's module forward instead of
            running the module again: one module forward less per module
            step, its input tokens one MAE update stale (not published;
            default off).
        lambda_bin, lambda_kl, lambda_div: loss weights (published 1.0,
            0.1, 2.0, with L_bin's bump of height σ√(2π) and L_kl summed
            over the images of the process's batch).
        bin_sigma: σ of L_bin's Gaussian bump (0.12).
        div_kappa: κ of L_div (0.1).
        kl_reduction: ``'sum'`` (published) or ``'mean'`` of L_kl over the
            batch (``'mean'`` is B times weaker at the same λ_kl).
        curriculum: initial c (the hook overwrites it each iteration).
        torch1_zero_grad: the optimizer semantics of the **published runs**
            (torch 1.x, timm 0.3.2: one AdamW over both parts and
            ``zero_grad()`` leaving zero gradients, not ``None``): after
            each part's optimizer step the other part's optimizer also
            steps on its zero gradients (an AdamW momentum and weight-decay
            step: two steps per part per iteration) and gradients are
            zeroed in place.  Default off: torch ≥ 2.0 semantics, the
            frozen part is not moved (docs/cl_mae.md, measured effect).
        **kwargs: the rest of :class:`MaskedMAE`'s arguments.
    """

    # two optimizers (PartsOptimWrapperConstructor): the module's, the MAE's
    optim_parts = dict(masker=('masker', ))
    default_optim_part = 'mae'

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 masker: Optional[Union[dict, BaseMasker]] = None,
                 masker_update_interval: int = 1,
                 masker_batch_size: Optional[int] = None,
                 soft_batch_size: Optional[int] = None,
                 reuse_module_forward: bool = False,
                 lambda_bin: float = 1.0,
                 lambda_kl: float = 0.1,
                 lambda_div: float = 2.0,
                 bin_sigma: float = 0.12,
                 div_kappa: float = 0.1,
                 kl_reduction: str = 'sum',
                 curriculum: float = 1.0,
                 torch1_zero_grad: bool = False,
                 **kwargs) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head,
                         masker=masker, **kwargs)
        if int(masker_update_interval) < 1:
            raise ValueError('masker_update_interval must be an integer '
                             f'>= 1, got {masker_update_interval!r}')
        self.masker_update_interval = int(masker_update_interval)
        if masker_batch_size is not None and int(masker_batch_size) < 2:
            raise ValueError('masker_batch_size must be >= 2 (L_div compares '
                             f'images), got {masker_batch_size!r}')
        self.masker_batch_size = masker_batch_size
        if soft_batch_size is not None and int(soft_batch_size) < 1:
            raise ValueError('soft_batch_size must be >= 1, got '
                             f'{soft_batch_size!r}')
        self.soft_batch_size = soft_batch_size
        self.reuse_module_forward = bool(reuse_module_forward)
        self.torch1_zero_grad = bool(torch1_zero_grad)
        self._kept_scores = None
        self.loss_cfg = dict(lambda_bin=lambda_bin, lambda_kl=lambda_kl,
                             lambda_div=lambda_div, sigma=bin_sigma,
                             kappa=div_kappa, kl_reduction=kl_reduction)
        # c(t) and the number of train steps taken: state of the training,
        # saved in checkpoints with the weights
        self.register_buffer('curriculum_factor',
                             torch.tensor(float(curriculum)))
        self.register_buffer('train_iter', torch.tensor(0, dtype=torch.long))

    # the masking module (MaskedMAE.build_masker): published, 5 blocks at
    # the encoder's width, 4 heads (CurriculumMasker's defaults), the
    # official head Linear(D, L) for the backbone's L patches
    default_masker = dict(type='CurriculumMasker')

    def masker_defaults(self) -> dict:
        dims = self.backbone.embed_dims
        res = self.backbone.patch_resolution
        return dict(super().masker_defaults(), in_channels=dims,
                    embed_dims=dims, num_patches=int(res[0] * res[1]))

    @classmethod
    def check_config(cls, cfg) -> None:
        """Before anything is built (``engine.config_checks``): the module
        step's ``masker_batch_size`` and ``soft_batch_size`` fit in a
        batch."""
        model = cfg.get('model') or {}
        batch = (cfg.get('train_dataloader') or {}).get('batch_size')
        for key in ('masker_batch_size', 'soft_batch_size'):
            k = model.get(key)
            if k is not None and batch is not None and int(k) > int(batch):
                raise ValueError(
                    f'model.{key}={k} is larger than '
                    f'train_dataloader.batch_size={batch} (images per '
                    'process): the module step would use the whole batch; '
                    'set it to at most the batch size')

    def check_masker(self, masker: nn.Module) -> None:
        if next(masker.parameters(), None) is None:
            raise TypeError(
                'CLMAE needs a learnable masker that returns scores (such '
                f'as CurriculumMasker), got {type(masker).__name__}')

    # ------------------------------------------------------------------
    # the training iteration (§3): MAE step, then masking-module step
    # ------------------------------------------------------------------
    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapperDict) -> Dict[str, torch.Tensor]:
        """One iteration: the MAE step, then (every n) the module step."""
        mae_optim, masker_optim = self._check_optim_wrapper(optim_wrapper)
        with mae_optim.optim_context(self):
            data = self.data_preprocessor(data, True)
        inputs, data_samples = data['inputs'], data['data_samples']
        update = int(self.train_iter) % self.masker_update_interval == 0
        self._kept_scores = None
        keep = update and self.reuse_module_forward
        torch1 = self.torch1_zero_grad
        log_vars = self.mae_step(inputs, data_samples, mae_optim,
                                 keep_scores=keep,
                                 partner=masker_optim if torch1 else None)
        if update:
            k = self.masker_batch_size or len(inputs)
            scores = self._kept_scores
            self._kept_scores = None
            log_vars.update(
                self.masker_step(inputs[:k], data_samples and data_samples[:k],
                                 masker_optim,
                                 scores=None if scores is None else scores[:k],
                                 partner=mae_optim if torch1 else None))
        self.train_iter += 1
        return log_vars

    def mae_step(self, inputs: torch.Tensor,
                 data_samples: Optional[List[DataSample]],
                 optim_wrapper: OptimWrapper,
                 keep_scores: bool = False,
                 partner: Optional[OptimWrapper] = None
                 ) -> Dict[str, torch.Tensor]:
        """1. MAE step: the module (frozen, no graph) picks the top-k mask,
        MAE's loss on the masked patches updates the MAE only.  With
        ``keep_scores`` the module's forward keeps its graph and its scores
        are kept for the module step (``reuse_module_forward``); the MAE's
        loss does not depend on them (they only rank).  ``partner``: the
        module's optimizer, stepped too (``torch1_zero_grad``)."""
        with optim_wrapper.optim_context(self):
            tokens, result = self.mask(inputs, data_samples,
                                       keep_graph=keep_scores)
            if keep_scores:
                self._kept_scores = result.scores
            pred = self.reconstruct(tokens, result)
            loss = self.head.loss(pred, inputs, result.mask)
        self._update(optim_wrapper, loss, self.mae_parameters(),
                     partner)
        return dict(loss=loss.detach(), **mask_statistics(result))

    def masker_step(self, inputs: torch.Tensor,
                    data_samples: Optional[List[DataSample]],
                    optim_wrapper: OptimWrapper,
                    scores: Optional[torch.Tensor] = None,
                    partner: Optional[OptimWrapper] = None
                    ) -> Dict[str, torch.Tensor]:
        """2. Masking-module step: the MAE frozen (``requires_grad`` off, so
        its parameters get no gradient), L_mask on the soft full-token pass
        updates the module only (``scores``: the module's scores with their
        graph, reused from the MAE step; default: a new module forward;
        ``partner``: the MAE's optimizer, stepped too, ``torch1_zero_grad``).
        """
        with optim_wrapper.optim_context(self), \
                frozen(self.mae_parameters()):
            losses = self.masker_loss(inputs, data_samples, scores)
        self._update(optim_wrapper, losses['loss_masker'],
                     self.masker.parameters(), partner)
        return {k: v.detach() for k, v in losses.items()}

    def mask(self, inputs: torch.Tensor,
             data_samples: Optional[List[DataSample]] = None,
             keep_graph: bool = False):
        """Tokens and the module's top-k mask; the module gets no graph
        (unless ``keep_graph``)."""
        tokens = self.backbone.embed(inputs)
        with torch.set_grad_enabled(keep_graph and torch.is_grad_enabled()):
            result = self.masker(tokens, inputs,
                                 self.mask_context(data_samples))
        return tokens, result

    def masker_loss(self, inputs: torch.Tensor,
                    data_samples: Optional[List[DataSample]] = None,
                    scores: Optional[torch.Tensor] = None,
                    partner: Optional[OptimWrapper] = None
                    ) -> Dict[str, torch.Tensor]:
        """L_mask and its terms on a batch (§3); call with the MAE frozen.
        L_rec^soft on the first ``soft_batch_size`` images, the other terms
        on all."""
        tokens = self.backbone.embed(inputs)
        if scores is None:
            scores = self.masker(tokens, inputs,
                                 self.mask_context(data_samples)).scores
        if scores is None:
            raise TypeError(
                f'CLMAE needs a masker that returns scores (such as '
                f'CurriculumMasker), got {type(self.masker).__name__}')
        k = self.soft_batch_size or len(inputs)
        pred = self.soft_reconstruct(tokens[:k], scores[:k])
        rec = soft_reconstruction_loss(
            self.per_patch_loss(pred, inputs[:k]), scores[:k])
        return masking_module_loss(
            rec, scores, float(self.curriculum_factor),
            self.masker.mask_ratio, **self.loss_cfg)

    def soft_reconstruct(self, tokens: torch.Tensor,
                         scores: torch.Tensor) -> torch.Tensor:
        """The soft pass: every token scaled by s_i, encoder on all L,
        decoder with ids_restore = identity (no mask tokens): B x L x p²·3.
        """
        B, L = scores.shape
        every = torch.arange(L, device=scores.device).expand(B, L)
        latent = self.backbone.walk(tokens * scores.unsqueeze(-1)).output
        return self.neck(latent, every)

    def set_curriculum(self, value: float) -> None:
        """Set c(t) (called by ``CurriculumHook`` before each iteration)."""
        self.curriculum_factor.fill_(float(value))

    # ------------------------------------------------------------------
    # keeping the two steps apart
    # ------------------------------------------------------------------
    def mae_parameters(self) -> List[nn.Parameter]:
        """Every parameter outside the masking module."""
        return [p for name, p in self.named_parameters()
                if not name.startswith('masker.')]

    def _check_optim_wrapper(self, optim_wrapper):
        """``(optim_wrapper['mae'], optim_wrapper['masker'])``, checked once:
        the two optimizers hold the MAE's and the module's parameters."""
        if not isinstance(optim_wrapper, OptimWrapperDict) or \
                set(optim_wrapper.keys()) != {'mae', 'masker'}:
            raise TypeError(
                "CLMAE trains with two optimizers: set optim_wrapper = "
                "dict(constructor='PartsOptimWrapperConstructor', mae=dict("
                "...), masker=dict(...)), got "
                f'{type(optim_wrapper).__name__}')
        if getattr(self, '_checked_optim', None) is not optim_wrapper:
            masker_ids = {id(p) for p in self.masker.parameters()}
            for key, mine in (('mae', False), ('masker', True)):
                for group in optim_wrapper[key].optimizer.param_groups:
                    for p in group['params']:
                        if (id(p) in masker_ids) != mine:
                            raise ValueError(
                                f"optim_wrapper['{key}'] holds a parameter "
                                'of the other step')
            self._checked_optim = optim_wrapper
        return optim_wrapper['mae'], optim_wrapper['masker']

    @staticmethod
    def _update(optim_wrapper: OptimWrapper, loss: torch.Tensor,
                params: Iterable[nn.Parameter],
                partner: Optional[OptimWrapper] = None) -> None:
        """``optim_wrapper.update_params(loss)`` with the gradients averaged
        over the processes in distributed runs (``PartsDataParallel``).

        ``partner`` (``torch1_zero_grad``, the published runs' torch 1.x
        single optimizer): the frozen part's optimizer steps at the same
        time on the zero gradients its parameters hold since their own
        last step (parameters that never had a gradient are skipped by
        AdamW, as in torch 1.x), and gradients are zeroed in place
        (``zero_grad(set_to_none=False)``)."""
        optim_wrapper.backward(optim_wrapper.scale_loss(loss))
        if optim_wrapper.should_update():
            average_over_ranks(p.grad for p in params)
            optim_wrapper.step()
            if partner is None:
                optim_wrapper.zero_grad()
            else:
                if any(p.grad is not None
                       for group in partner.optimizer.param_groups
                       for p in group['params']):
                    partner.step()
                optim_wrapper.zero_grad(set_to_none=False)
                partner.zero_grad(set_to_none=False)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss' and self.training:
            raise RuntimeError(
                'CLMAE trains through its own train_step (two optimizer '
                'steps per iteration); a model wrapper called '
                "forward(mode='loss') instead. In distributed runs set "
                "model_wrapper_cfg=dict(type='PartsDataParallel').")
        return super().forward(inputs, data_samples, mode=mode)


@contextmanager
def frozen(params: Iterable[nn.Parameter]):
    """Turn ``requires_grad`` off for ``params`` inside the block: the
    backward of the other step then leaves them no gradient at all."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@torch.no_grad()
def mask_statistics(result: MaskResult) -> Dict[str, torch.Tensor]:
    """What to watch of the module's scores (logged every iteration).

    ``mask_score_mean``: mean s (the KL term holds it near 1 − r);
    ``mask_binary``: mean |2s − 1| (1 = every score 0 or 1);
    ``mask_batch_std``: std of s over the batch, averaged over patches
    (0 = every image gets the same scores; what L_div prevents);
    ``mask_kept_score``: mean s of the kept patches;
    ``mask_specificity``: how image-specific the batch's 0/1 masks are
    (:func:`~mlmask_mm.models.utils.mask_specificity`; 1 = independent
    random masks, 0 = one position pattern for every image).
    """
    s = result.scores.float()
    kept = 1 - result.mask.float()
    stats = dict(
        mask_score_mean=s.mean(),
        mask_binary=(2 * s - 1).abs().mean(),
        mask_kept_score=(s * kept).sum() / kept.sum().clamp_min(1))
    stats['mask_batch_std'] = s.std(dim=0).mean() if s.shape[0] > 1 \
        else s.new_zeros(())
    stats['mask_specificity'] = mask_specificity(result.mask)
    return stats
