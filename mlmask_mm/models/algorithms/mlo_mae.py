"""MLO-MAE: MAE whose masking network learns from a downstream task.

Guo et al., "Downstream Task Guided Masking Learning in Masked Autoencoders
Using Multi-Level Optimization", §3 (eqs. 1-4) and App. A.  Three parts,
three losses, one outer iteration (:meth:`MLOMAE.outer_step`):

1. level 1, θ1 = MAE encoder + decoder: K steps on
   L1 = Σ m p ℓ / Σ m (reconstruction weighted by the masking network's
   probabilities p, masker frozen);
2. level 2, θ2 = downstream head on frozen encoder features: one step on
   L2 = its loss on the labelled *train* split;
3. level 3, φ = masking network: one step along the hypergradient of
   L3 = the head's loss on the held-out *validation* split, differentiated
   through the level-1 and level-2 steps
   (:mod:`mlmask_mm.models.utils.hypergrad`).

The masking network is any :class:`ProbabilityMasker` (``MLOMLPMasker``, the
paper's, or ``MLOTokenMasker``, the light one).  The downstream task is a
config entry: ``downstream_head`` is any mmpretrain classification head with
``loss((feats,), data_samples)`` (``LinearClsHead`` by default), fed the
encoder's global-average (``feature='gap'``) or class-token features of the
unmasked image.  What drives the loop (dataloaders, schedulers, masker update
every n iterations) is ``MLOTrainLoop`` in :mod:`mlmask_mm.engine.loops`.
"""
import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample
from torch import Tensor, nn
from torch.func import functional_call

from mlmask_mm.registry import MODELS
from mlmask_mm.utils.dist import average_over_ranks
from ..losses.mlo_mae_losses import (per_patch_reconstruction_loss,
                                     probability_weighted_loss)
from ..maskers.base import MaskResult
from ..maskers.mlo_masker import ProbabilityMasker
from ..utils import hypergrad as hg
from ..utils.mask_specificity import mask_specificity
from ..utils.options import option_view
from ..utils.parts import part_of_children
from .masked_mae import MaskedMAE
from .mlo_mae_options import XI_FROM_LR, MLOMAEOptions


@dataclass
class Level1Record:
    """What the hypergradient needs of one level-1 step: θ1 before it, the
    images and the hard mask it used (kept fixed)."""
    theta1: Dict[str, Tensor]
    inputs: Tensor
    mask: MaskResult


class _Call(nn.Module):
    """Runs ``fn(*args)`` with ``module``'s parameters replaced (through
    :func:`torch.func.functional_call`), for methods other than forward."""

    def __init__(self, module: nn.Module, fn) -> None:
        super().__init__()
        self.m = module
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


@MODELS.register_module()
class MLOMAE(MaskedMAE):
    """MAE + masking network + downstream head, trained by three levels.

    Args:
        backbone, neck, head: as :class:`MaskedMAE` (``MaskableViT``,
            ``MAEPretrainDecoder``, ``MAEPretrainHead``).
        masker: a :class:`ProbabilityMasker` config; ``num_patches``,
            ``embed_dims`` and ``mask_ratio`` default to the backbone's.
        downstream_head: the level-2/3 head, e.g. ``dict(type=
            'LinearClsHead', num_classes=10, in_channels=192)``.
        feature: 'gap' (mean of the patch tokens) or 'cls' (class token) of
            the encoder on the whole image.
        hypergrad: options of the hypergradient, see
            :class:`~.mlo_mae_options.HypergradOptions`;
            ``xi1`` / ``xi2`` weigh its two paths (1.0: the official code;
            ``'lr'``: the optimizers' learning rates, unrolled SGD), see
            ``docs/mlo_mae.md``.
        amp: None (fp32) or 'bf16' (autocast for everything but the
            finite differences, which always run in strict fp32).
        learnable_pos_embed: train the encoder's and the decoder's position
            embeddings (part of θ1; initialised to MAE's sin-cos tables) as
            the official CIFAR model (``cifar_mae_model.py`` l. 219-223,
            both ``requires_grad=True``); MAE keeps them fixed (default).
    """

    # the masking network (MaskedMAE.build_masker): named by the config
    default_masker = None

    def masker_defaults(self) -> dict:
        return dict(super().masker_defaults(),
                    embed_dims=self.backbone.embed_dims,
                    num_patches=self.backbone.num_patches)

    def check_masker(self, masker: nn.Module) -> None:
        if not isinstance(masker, ProbabilityMasker):
            raise TypeError(
                'MLOMAE needs a masking network that outputs probabilities '
                '(a ProbabilityMasker such as MLOMLPMasker / MLOTokenMasker)'
                f', got model.masker.type={type(masker).__name__!r}')

    # three optimizers (PartsOptimWrapperConstructor): θ2, φ and θ1 (the rest)
    optim_parts = dict(head=('downstream_head', ), masker=('masker', ))
    default_optim_part = 'mae'

    @classmethod
    def check_optim_part(cls, part: str, cfg: dict) -> None:
        """Refuse ``AmpOptimWrapper``: its loss scaling would unscale the
        masking network's hypergradient, which no scaled loss produced.
        Mixed precision is ``model.amp='bf16'`` (autocast inside
        :meth:`outer_step`, finite differences in fp32)."""
        wrapper = cfg.get('type', 'OptimWrapper')
        if 'Amp' in str(wrapper):
            raise ValueError(
                f'optim_wrapper.{part}: type={wrapper!r} is not supported '
                "by MLO-MAE; use model.amp='bf16' for mixed precision "
                '(AmpOptimWrapper would unscale the hypergradient)')

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 masker: Optional[dict] = None,
                 downstream_head: Optional[dict] = None,
                 feature: str = 'gap',
                 hypergrad: Optional[dict] = None,
                 amp: Optional[str] = None,
                 learnable_pos_embed: bool = False,
                 **kwargs) -> None:
        if masker is None:
            raise ValueError(
                'MLOMAE needs model.masker, a masking-network config such '
                "as dict(type='MLOTokenMasker') or dict(type='MLOMLPMasker')"
                f', got {masker!r}')
        if not isinstance(downstream_head, dict):
            raise ValueError(
                'MLOMAE needs model.downstream_head, e.g. dict(type='
                "'LinearClsHead', num_classes=..., in_channels=...), got "
                f'{downstream_head!r}')
        options = MLOMAEOptions.from_config(
            feature=feature, amp=amp,
            learnable_pos_embed=learnable_pos_embed, hypergrad=hypergrad,
            compile=kwargs.get('compile', False))
        super().__init__(backbone=backbone, neck=neck, head=head,
                         masker=masker, **kwargs)
        #: the checked settings (:class:`MLOMAEOptions`), read-only
        self.options = options
        with DefaultScope.overwrite_default_scope('mlmask_mm'):
            self.downstream_head = MODELS.build(downstream_head)
        if learnable_pos_embed:
            self.backbone.pos_embed.requires_grad_(True)
            decoder_pos = getattr(self.neck, 'decoder_pos_embed', None)
            if decoder_pos is None:
                raise ValueError(
                    'model.learnable_pos_embed=True needs a decoder with a '
                    'decoder_pos_embed (MAEPretrainDecoder), got neck '
                    f'{type(self.neck).__name__}')
            decoder_pos.requires_grad_(True)
        self.last_hypergradient: Optional[Dict[str, Tensor]] = None
        self._warned_eps = False

    # ------------------------------------------------------------------
    # the options (MLOMAEOptions, read-only)
    # ------------------------------------------------------------------
    feature = option_view('feature')
    amp = option_view('amp')

    @property
    def hypergrad(self) -> dict:
        """``model.hypergrad`` with its defaults, as a dict (a copy)."""
        return asdict(self.options.hypergrad)

    # ------------------------------------------------------------------
    # parts and their parameters
    # ------------------------------------------------------------------
    def part_params(self, part: str) -> Dict[str, Tensor]:
        """The trainable parameters of a part ('mae', 'head' or 'masker',
        as ``optim_parts`` declares them and the optimizers are built), by
        their names in the model."""
        children = [name for name, owner in part_of_children(self).items()
                    if owner == part]
        if not children:
            raise KeyError(f'MLOMAE has no part {part!r}; its parts: '
                           f'{sorted(set(part_of_children(self).values()))}')
        prefix = tuple(f'{name}.' for name in children)
        return {n: p for n, p in self.named_parameters()
                if n.startswith(prefix) and p.requires_grad}

    def _autocast(self, device: torch.device):
        if self.amp == 'bf16':
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @staticmethod
    def _images(inputs: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        return inputs[0] if isinstance(inputs, (list, tuple)) else inputs

    # ------------------------------------------------------------------
    # the model's functions
    # ------------------------------------------------------------------
    def features(self, inputs: Tensor) -> Tensor:
        """Encoder features of the unmasked images, B x D ('gap' or 'cls')."""
        latent = self.backbone.walk(self.backbone.embed(inputs)).output
        return latent[:, 1:].mean(1) if self.feature == 'gap' else latent[:,
                                                                          0]

    def head_loss(self, inputs: Tensor,
                  data_samples: List[DataSample]) -> Tensor:
        """The downstream head's loss on the encoder features."""
        feats = self.features(inputs)
        return self.downstream_head.loss((feats, ), data_samples)['loss']

    def weighted_reconstruction_loss(self, inputs: Tensor, result: MaskResult,
                                     probs: Tensor,
                                     tokens: Optional[Tensor] = None
                                     ) -> Tensor:
        """L1 = Σ m p ℓ / Σ m for the given mask and probabilities."""
        if tokens is None:
            tokens = self.backbone.embed(inputs)
        pred = self.reconstruct(tokens, result)
        ell = per_patch_reconstruction_loss(self.head, pred, inputs)
        return probability_weighted_loss(ell, result.mask, probs)

    def loss(self, inputs: Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, Tensor]:
        """Level-1 loss with the masker frozen (p detached): the plain
        train_step / test path.  The masker learns only in outer_step."""
        inputs = self._images(inputs)
        tokens, result = self.mask(inputs, data_samples)
        loss = self.weighted_reconstruction_loss(
            inputs, result, self.level1_probabilities(tokens, result), tokens)
        return dict(loss=loss)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """mmpretrain's modes plus ``'predict'``: the downstream head's
        prediction (stage-II evaluation through mmengine's val/test loop)."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    @torch.no_grad()
    def predict(self, inputs: Union[Tensor, Sequence[Tensor]],
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """The level-2 head on the frozen encoder's features of the whole
        images: ``pred_score`` / ``pred_label`` for mmpretrain's
        ``Accuracy``.  On held-out labelled data this is the paper's
        linear-probe number (App. B.3), see ``docs/mlo_mae.md``."""
        images = self._images(inputs)
        with self._autocast(images.device):
            feats = self.features(images)
        return self.downstream_head.predict((feats.float(), ), data_samples)

    # ------------------------------------------------------------------
    # one outer iteration
    # ------------------------------------------------------------------
    def outer_step(self, mae_batch: Union[dict, Sequence[dict]],
                   train_batch: dict, val_batch: dict, optim_wrapper,
                   update_masker: bool) -> Dict[str, Tensor]:
        """K level-1 steps, one level-2 step and, if ``update_masker``, one
        level-3 (masking network) step.

        Args:
            mae_batch: one data dict (used by all K level-1 steps) or a
                sequence of K data dicts (one per step), as the dataloader
                gives them (``dict(inputs=..., data_samples=...)``).
            train_batch: labelled train-split batch (level 2).
            val_batch: labelled validation-split batch (level 3).
            optim_wrapper: ``OptimWrapperDict`` with 'mae', 'head', 'masker'.
            update_masker: take the level-3 step in this iteration.

        Returns:
            log variables (detached): loss_mae (mean over the K steps),
            loss_head, mask_prob_mean / _std, mask_prob_masked /
            _visible (mean p of masked / visible patches) and, with the
            level-3 step, loss_val, hypergrad_norm (‖∇φ L3‖),
            hypergrad_rms (its per-element RMS, to compare with the masking
            optimizer's ε) and hypergrad_head_share (‖ξ2 ∇²θ1θ2 L2 g2‖ /
            ‖g1‖, the head path against the direct path).
        """
        K = self.options.hypergrad.unroll_steps
        batches = [mae_batch] * K if isinstance(mae_batch, dict) else list(
            mae_batch)
        if len(batches) != K:
            raise ValueError(f'outer_step got {len(batches)} MAE batches '
                             f'for hypergrad.unroll_steps={K}')
        last_only = self.options.hypergrad.unroll == 'last'
        logs: Dict[str, Tensor] = {}

        # level 1: K MAE steps on Σ m p ℓ / Σ m, masker frozen
        records, losses = [], []
        for k, batch in enumerate(batches):
            record = update_masker and (not last_only or k == K - 1)
            loss, mask, rec = self.level1_step(batch, optim_wrapper['mae'],
                                               record)
            losses.append(loss)
            if rec is not None:
                records.append(rec)
        logs['loss_mae'] = torch.stack(losses).mean()
        logs.update(self.mask_statistics(mask))

        # level 2: the head on frozen encoder features (train split)
        theta2 = ({n: p.detach().clone()
                   for n, p in self.part_params('head').items()}
                  if update_masker else None)
        train = self.data_preprocessor(train_batch, True)
        logs['loss_head'] = self.level2_step(
            self._images(train['inputs']), train['data_samples'],
            optim_wrapper['head'])

        # level 3: the masking network along the hypergradient of L3
        if update_masker:
            val = self.data_preprocessor(val_batch, True)
            logs.update(
                self.level3_step(records, theta2, train, val, optim_wrapper))
        return logs

    def level1_step(self, batch: dict, optim_wrapper, record: bool):
        """One MAE step; returns (loss, its MaskResult, Level1Record or
        None)."""
        data = self.data_preprocessor(batch, True)
        inputs = self._images(data['inputs'])
        params = self.part_params('mae')
        theta1 = ({n: p.detach().clone() for n, p in params.items()}
                  if record else None)
        with self._autocast(inputs.device):
            tokens, result = self.mask(inputs, data['data_samples'])
            loss = self.weighted_reconstruction_loss(
                inputs, result, self.level1_probabilities(tokens, result),
                tokens)
        optim_wrapper.backward(loss)
        average_over_ranks(p.grad for p in params.values())
        optim_wrapper.step()
        optim_wrapper.zero_grad()
        rec = None
        if record:
            fixed = MaskResult(result.ids_keep, result.ids_restore,
                               result.mask.float())
            rec = Level1Record(theta1, inputs, fixed)
        return loss.detach(), result, rec

    def level1_probabilities(self, tokens: Tensor,
                             result: MaskResult) -> Tensor:
        """p as level 1 sees it: a constant for θ1 when the masking
        network's input is detached; else p(θ1) with φ held fixed, so that
        θ1 also learns through p (as in the official code, where the
        network reads the patch embeddings undetached) and the level-1 step
        is the step the hypergradient differentiates."""
        if self.masker.detach_input:
            return result.scores.detach()
        phi = {n: p.detach() for n, p in self.part_params('masker').items()}
        return self.call(phi, self.masker.probabilities, tokens)

    def level2_step(self, inputs: Tensor, data_samples: List[DataSample],
                    optim_wrapper) -> Tensor:
        """One step of the downstream head on frozen encoder features."""
        with self._autocast(inputs.device):
            with torch.no_grad():
                feats = self.features(inputs)
            loss = self.downstream_head.loss((feats, ),
                                             data_samples)['loss']
        params = self.part_params('head')
        optim_wrapper.backward(loss)
        average_over_ranks(p.grad for p in params.values())
        optim_wrapper.step()
        optim_wrapper.zero_grad()
        return loss.detach()

    def level3_step(self, records: List[Level1Record],
                    theta2: Dict[str, Tensor], train: dict, val: dict,
                    optim_wrapper) -> Dict[str, Tensor]:
        """The masking network's step: φ ← optimizer(∇φ L3(θ1', θ2'))."""
        h = self.options.hypergrad
        xi1 = self.xi('xi1', optim_wrapper['mae'])
        xi2 = self.xi('xi2', optim_wrapper['head'])
        train_x, val_x = (self._images(d['inputs']) for d in (train, val))
        val_loss = {}

        def l2(t1, t2):
            return self.call({**t1, **t2}, self.head_loss, train_x,
                             train['data_samples'])

        def l3(t1, t2):
            loss = self.call({**t1, **t2}, self.head_loss, val_x,
                             val['data_samples'])
            val_loss['loss_val'] = loss.detach()
            return loss

        phi = {n: p.detach() for n, p in self.part_params('masker').items()}
        # the model stays in training mode: dropout (MLOClsHead's 0.1) is on
        # in L2 and L3 as in the official code, where betty runs the
        # problems' training_step on modules in training mode; the finite
        # differences draw the same dropout masks at ±ε (hg.SameRNG)
        with self._autocast(val_x.device):
            res = hg.hypergradient(
                [self.level1_loss_fn(r) for r in records], l2, l3,
                [r.theta1 for r in records],
                {n: p.detach() for n, p in self.part_params('mae').items()},
                theta2,
                {n: p.detach() for n, p in self.part_params('head').items()},
                phi, xi1, xi2, mode=h.mode, unroll=h.unroll,
                fd_radius=h.fd_radius, head_term=h.head_term,
                reduce=average_over_ranks)
        for n, p in self.part_params('masker').items():
            p.grad = res.grad[n].to(p.dtype)
        logs = dict(loss_val=val_loss['loss_val'].float(),
                    hypergrad_norm=hg.norm(res.grad),
                    hypergrad_rms=hg.rms(res.grad),
                    hypergrad_head_share=res.head_share())
        self._check_against_eps(logs['hypergrad_rms'],
                                optim_wrapper['masker'])
        optim_wrapper['masker'].step()
        optim_wrapper['masker'].zero_grad()
        self.last_hypergradient = {n: g.detach() for n, g in res.grad.items()}
        return logs

    def xi(self, key: str, optim_wrapper) -> float:
        """ξ1 ('xi1') or ξ2 ('xi2'): the configured number, or the current
        learning rate of ``optim_wrapper`` with ``'lr'``."""
        value = getattr(self.options.hypergrad, key)
        if value == XI_FROM_LR:
            return float(optim_wrapper.get_lr()['lr'][0])
        return float(value)

    def _check_against_eps(self, grad_rms: Tensor, optim_wrapper) -> None:
        """Warn once when the hypergradient's RMS is within 100x of the
        masking network's Adam ε (its steps would then be damped)."""
        eps = optim_wrapper.optimizer.param_groups[0].get('eps')
        if self._warned_eps or eps is None or grad_rms > 100 * eps:
            return
        self._warned_eps = True
        print_log(
            f'MLO-MAE: the masking network\'s hypergradient has RMS '
            f'{grad_rms.item():.3g}, within 100x of its optimizer\'s '
            f'eps={eps:g}: AdamW damps its steps.  Lower '
            'optim_wrapper.masker.optimizer.eps or keep model.hypergrad.xi1/'
            'xi2 at 1.0 (docs/mlo_mae.md)', logger='current',
            level=logging.WARNING)

    def level1_loss_fn(self, rec: Level1Record):
        """l1(θ1, φ) of one recorded step: its images, its hard mask fixed
        and, with a detached masker input, that input fixed at θ1^k."""
        fixed_input = None
        if self.masker.detach_input:  # computed once, in full precision
            with torch.no_grad(), hg.strict_fp32():
                fixed_input = self.call(rec.theta1, self.backbone.embed,
                                        rec.inputs)

        def loss(tokens, inputs):
            x = fixed_input if fixed_input is not None else tokens
            probs = self.masker.probabilities(x)
            return self.weighted_reconstruction_loss(inputs, rec.mask, probs,
                                                     tokens)

        def l1(t1, phi):
            return self.call(
                {**t1, **phi},
                lambda x: loss(self.backbone.embed(x), x), rec.inputs)
        return l1

    def call(self, params: Dict[str, Tensor], fn, *args):
        """``fn(*args)`` with this model's parameters replaced by
        ``params`` (names as in ``named_parameters``)."""
        return functional_call(_Call(self, fn),
                               {'m.' + n: v for n, v in params.items()},
                               args, strict=False)

    @torch.no_grad()
    def mask_statistics(self, result: MaskResult) -> Dict[str, Tensor]:
        """Mean / std of p, mean p of the masked and of the visible patches;
        what of p is a position pattern and what varies per image:
        ``mask_prob_position_std`` (std over positions of the batch mean of
        p), ``mask_prob_image_std`` (std over the images, averaged over
        positions), ``mask_prob_saturated`` (fraction of p below 0.01 or
        above 0.99) and ``mask_shared`` (fraction of each image's masked
        patches that every image of the batch masks: 1 = one mask for
        all) and ``mask_specificity``
        (:mod:`mlmask_mm.models.utils.mask_specificity`: ≈ 1 for
        independent masks, 0 for one pattern shared by the batch)."""
        p, m = result.scores.detach().float(), result.mask.float()
        shared = m.prod(0).sum() / m[0].sum().clamp_min(1)
        return dict(
            mask_prob_mean=p.mean(), mask_prob_std=p.std(),
            mask_prob_masked=(p * m).sum() / m.sum().clamp_min(1),
            mask_prob_visible=(p * (1 - m)).sum() /
            (1 - m).sum().clamp_min(1),
            mask_prob_position_std=p.mean(0).std(),
            mask_prob_image_std=(p.std(0).mean() if len(p) > 1 else
                                 p.new_zeros(())),
            mask_prob_saturated=((p < 0.01) | (p > 0.99)).float().mean(),
            mask_shared=shared, mask_specificity=mask_specificity(m))
