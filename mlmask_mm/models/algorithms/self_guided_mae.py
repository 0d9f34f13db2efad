"""Self-Guided MAE (Shin et al., "Self-Guided Masked Autoencoder",
NeurIPS 2024), top to bottom; see docs/self_guided_mae.md.

Random masks first.  Every check (``switch.interval`` epochs) the decoder's
exploitation rates R_{V→O}, R_{M→O} (a mass-conserving attention rollout,
:mod:`..utils.exploitation`) are measured under random masks on a fixed,
class-balanced sample; informed masking starts at T, the first check where
R_{M→O} ≥ R_{V→O} after a check where it was below (the paper's Fig. 4),
not before ``switch.earliest`` and at the latest at ``switch.fallback``
(or at a fixed ``switch.start``).  From T on, each image's relevance S
(:mod:`..utils.self_guided_ncut`: a normalised cut of the features A(XW^V) of
encoder block ``feature_layer``) ranks its patches and
:class:`~mlmask_mm.models.maskers.SelfGuidedMasker` masks the most relevant
ones, revealing a share h of them as hints.

``generation`` says where S comes from:

* ``'once'`` (default, the paper's "use these informed masks for the
  remainder of the training"): computed at T for every training image,
  whole, and kept (:class:`..utils.relevance_cache.RelevanceCache`); each batch
  reads it through its samples' crop boxes and flips;
* ``'refresh'``: the same, recomputed every ``refresh_interval`` epochs;
* ``'iteration'``: recomputed on every training view (one extra no-grad
  encoder pass per step).

The hint ratio h is owned here: h = h_T at T, decaying linearly to
h_end at the last iteration, h(t) = h_T + (h_end − h_T) (t − t_T) /
(t_max − t_T) in iterations.  The switch, the measurement history and the
relevance cache are this module's state, saved in checkpoints as plain
tensors (``sg_state.*`` in ``state_dict()``, :meth:`state_tensors`).
:class:`~mlmask_mm.engine.hooks.SelfGuidedHook`
drives it from the runner through :meth:`check_due`, :meth:`measure_rates`,
:meth:`decide`, :meth:`start_informed`, :meth:`generation_due`,
:meth:`image_relevance`, :meth:`store_relevance` and :meth:`set_clock`.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmpretrain.structures import DataSample

from mlmask_mm.registry import MODELS
from ..maskers.base import mask_from_ranking, num_visible
from ..maskers.self_guided_masker import InformedMaskContext
from ..utils.exploitation import decoder_attention_rates
from ..utils.mask_specificity import mask_specificity
from ..utils.options import option_view
from ..utils.relevance_cache import RelevanceCache, normalise
from ..utils.self_guided_ncut import (SolverLog, affinity, fiedler_vector,
                                      fiedler_vector_exact, mean_token_cosine,
                                      object_relevance, spectrum_floor)
from .masked_mae import MaskedMAE
from .self_guided_options import SelfGuidedOptions


@MODELS.register_module()
class SelfGuidedMAE(MaskedMAE):
    """Self-Guided MAE: a :class:`MaskedMAE` that switches itself from random
    to informed masks.

    Args:
        backbone, neck, head, masker, **kwargs: as :class:`MaskedMAE`;
            ``masker`` (default ``RandomMasker``) draws the masks before T.
        informed_masker: config of the masker used from T on
            (``SelfGuidedMasker``; its mask ratio must equal ``masker``'s).
        features: ``'values'`` (A(XW^V), the attention output before the
            projection, eq. 2) or ``'blocks'`` (the block's output).
        feature_layer: encoder block of the features (negative = from the
            end; -2: the second-to-last, the paper's choice).
        ncut: ``tau`` (graph threshold, 0: fully connected with negative
            similarities clamped), ``eps``, the iterative solver's ``tol``
            (relative to the Ritz gap), ``max_iters``, ``patience``,
            ``block``, ``power_steps``
            (:func:`~..utils.self_guided_ncut.fiedler_vector`; the generation
            pass solves exactly) and ``degenerate_cos``: a mean token
            cosine above it counts an image's features as near-uniform
            (warned once per generation pass).
        generation: ``'once'``, ``'refresh'`` or ``'iteration'``.
        refresh_interval: k, in ``switch.by_epoch`` units, for ``'refresh'``.
        switch: ``criterion`` (``'crossing'`` or ``'fixed'``), ``by_epoch``,
            ``interval`` (checks), ``earliest``, ``fallback`` (``None``:
            none) and ``start`` (for ``'fixed'``), all in epochs (or
            iterations with ``by_epoch=False``).
        hint_ratio: (h_T, h_end) of the linear decay.
        measurement: ``num_images`` and ``seed`` of the class-balanced sample
            the rates are measured on (and of its random masks).
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 masker: Optional[dict] = None,
                 informed_masker: Optional[dict] = None,
                 features: str = 'values',
                 feature_layer: int = -2,
                 ncut: Optional[dict] = None,
                 generation: str = 'once',
                 refresh_interval: Optional[int] = None,
                 switch: Optional[dict] = None,
                 hint_ratio: Sequence[float] = (0.05, 0.0),
                 measurement: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head,
                         masker=masker, **kwargs)
        informed_masker = dict(informed_masker or
                               dict(type='SelfGuidedMasker'))
        informed_masker.setdefault('mask_ratio', self.masker.mask_ratio)
        self.informed_masker = MODELS.build(informed_masker)
        if self.informed_masker.mask_ratio != self.masker.mask_ratio:
            raise ValueError(
                f'SelfGuidedMAE: informed_masker.mask_ratio='
                f'{self.informed_masker.mask_ratio} differs from the random '
                f'masker\'s {self.masker.mask_ratio}')
        #: the checked settings (:class:`SelfGuidedOptions`), read-only
        self.options = SelfGuidedOptions.from_config(
            len(self.backbone.layers), features=features,
            feature_layer=feature_layer, ncut=ncut, generation=generation,
            refresh_interval=refresh_interval, switch=switch,
            hint_ratio=hint_ratio, measurement=measurement)
        # state (state_tensors)
        self.switch_at: Optional[int] = None   # T, in switch units
        self.switch_iter: Optional[int] = None  # T, in iterations
        self.seen_below = False
        self.history: List[Tuple[int, float, float]] = []
        self.cache: Optional[RelevanceCache] = None
        self.solver_log: Optional[SolverLog] = None  # of the last solve
        # mean token cosine of the last solve's features, per image
        self.feature_cosine: Optional[torch.Tensor] = None
        self._clock = (0, 1)  # (iteration, max_iters) for the hint ratio

    # -------------------------------------------- the options (read-only)
    features = option_view('features')
    feature_layer = option_view('feature_layer')
    ncut = option_view('ncut')
    generation = option_view('generation')
    refresh_interval = option_view('refresh_interval')
    switch = option_view('switch')
    hint_schedule = option_view(
        'hint_ratio', '(h_T, h_end) of the hint ratio\'s linear decay.')
    measurement = option_view('measurement')

    # ---------------------------------------------------------------- state
    @property
    def informed(self) -> bool:
        return self.switch_at is not None

    @property
    def progress_unit(self) -> str:
        return 'epoch' if self.switch['by_epoch'] else 'iteration'

    # The state is saved as plain tensors under ``sg_state.*`` keys of
    # ``state_dict()`` (not one ``_extra_state`` object): mmengine's Runner
    # broadcasts every state_dict entry after ``init_weights`` in
    # distributed runs, and its ``broadcast`` takes tensors only.  They are
    # not buffers, so DDP does not broadcast the cache at every step.
    STATE_PREFIX = 'sg_state.'

    def state_tensors(self) -> Dict[str, torch.Tensor]:
        """The switch, the history, the clock and the cache as tensors.

        ``switch``: int64 (switch_at, switch_iter, seen_below, iteration,
        max_iters), −1 for "not yet"; ``history``: float64 n x 3
        (progress, R_VO, R_MO); ``cache_*`` only once a cache exists.
        """
        out = dict(
            switch=torch.tensor([
                -1 if self.switch_at is None else self.switch_at,
                -1 if self.switch_iter is None else self.switch_iter,
                int(self.seen_below), *self._clock], dtype=torch.long),
            history=torch.tensor(self.history, dtype=torch.float64).reshape(
                -1, 3))
        if self.cache is not None:
            out.update({f'cache_{k}': v for k, v in
                        self.cache.state().items()})
        return out

    def load_state_tensors(self, state: Dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_tensors`."""
        switch_at, switch_iter, seen_below, it, max_iters = \
            state['switch'].tolist()
        self.switch_at = None if switch_at < 0 else int(switch_at)
        self.switch_iter = None if switch_iter < 0 else int(switch_iter)
        self.seen_below = bool(seen_below)
        self._clock = (int(it), int(max_iters))
        self.history = [(int(p), float(a), float(b))
                        for p, a, b in state['history'].tolist()]
        cache = {k[len('cache_'):]: v for k, v in state.items()
                 if k.startswith('cache_')}
        self.cache = RelevanceCache.from_state(cache) if cache else None

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name, value in self.state_tensors().items():
            destination[prefix + self.STATE_PREFIX + name] = value

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        head = prefix + self.STATE_PREFIX
        mine = {k[len(head):]: state_dict.pop(k)
                for k in [k for k in state_dict if k.startswith(head)]}
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if not mine:  # e.g. a plain MAE checkpoint: the state starts fresh
            missing_keys += [head + 'switch', head + 'history']
            return
        try:
            self.load_state_tensors(mine)
        except (KeyError, ValueError, RuntimeError) as err:
            error_msgs.append(f'SelfGuidedMAE: cannot restore its state from '
                              f'{sorted(head + k for k in mine)}: {err!r}')

    # ----------------------------------------------------------- hint ratio
    def set_clock(self, iteration: int, max_iters: int) -> None:
        """Where training is, for the hint ratio's decay."""
        self._clock = (int(iteration), max(int(max_iters), 1))

    @property
    def hint_ratio(self) -> float:
        """h(t) = h_T + (h_end − h_T) (t − t_T) / (t_max − t_T)."""
        h_t, h_end = self.hint_schedule
        t, t_max = self._clock
        t_T = self.switch_iter if self.switch_iter is not None else t
        if t_max <= t_T:
            return h_t
        share = min(max((t - t_T) / (t_max - t_T), 0.0), 1.0)
        return h_t + (h_end - h_t) * share

    # ---------------------------------------------------------- the switch
    def check_due(self, progress: int) -> bool:
        """Whether the rates are measured after ``progress`` epochs (or
        iterations) have finished."""
        return progress % self.switch['interval'] == 0

    @torch.no_grad()
    def measure_rates(self, inputs: torch.Tensor) -> torch.Tensor:
        """Σ over the images of R_{V→O}, R_{M→O} at the last decoder
        layer, and their count: a float64 3-vector (summed over ranks by the hook).

        Under random masks from ``measurement.seed`` (the global RNG is left
        as it was), in eval mode.
        """
        if len(inputs) == 0:
            return torch.zeros(3, dtype=torch.float64)
        was_training = self.training
        self.eval()
        devices = [inputs.device] if inputs.device.type == 'cuda' else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.measurement['seed'])
                tokens = self.backbone.embed(inputs)
                B, L = tokens.shape[:2]
                noise = torch.rand(B, L, device=tokens.device)
                result = mask_from_ranking(
                    noise, num_visible(L, self.masker.mask_ratio))
                rates = decoder_attention_rates(self, tokens, result)[-1]
        finally:
            self.train(was_training)
        return torch.stack([rates['R_VO'].double().sum().cpu(),
                            rates['R_MO'].double().sum().cpu(),
                            torch.tensor(float(B), dtype=torch.float64)])

    def decide(self, progress: int, r_vo: float, r_mo: float) -> str:
        """Record a check and say what it decides (deterministic in its
        arguments, so ranks given the same rates agree).

        Returns ``''`` (stay random) or why informed masking starts now:
        ``'crossing'``, ``'fallback'`` or ``'fixed start'``;
        ``'informed'`` once switched.
        """
        self.history.append((int(progress), float(r_vo), float(r_mo)))
        if self.informed:
            return 'informed'
        sw = self.switch
        if sw['criterion'] == 'fixed':
            return 'fixed start' if progress >= sw['start'] else ''
        below = r_mo < r_vo
        if below:
            self.seen_below = True
        if self.seen_below and not below and progress >= sw['earliest']:
            return 'crossing'
        if sw['fallback'] is not None and progress >= sw['fallback']:
            return 'fallback'
        return ''

    def start_informed(self, progress: int, iteration: int) -> None:
        """Informed masks from ``progress`` (epochs / iterations done) on."""
        self.switch_at, self.switch_iter = int(progress), int(iteration)

    # ---------------------------------------------------------- relevance
    @torch.no_grad()
    def token_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """X′ of all L patch tokens from block ``feature_layer``: A(XW^V)
        (``features='values'``) or the block output (``'blocks'``)."""
        values = self.features == 'values'
        walk = self.backbone.walk(tokens.detach(), upto=self.feature_layer,
                                  norm=False, return_values=values)
        x = walk.values[-1] if values else walk.output
        return x[:, 1:]

    @torch.no_grad()
    def relevance_from_features(self, features: torch.Tensor,
                                warn: bool = True,
                                exact: bool = False) -> torch.Tensor:
        """S (B x L) of B x L x C features; keeps the solver log and the
        features' mean token cosine.

        The graph and S in float64; the Fiedler vector by a float64
        ``eigh`` with ``exact`` (the generation pass), else by subspace
        iteration with float32 products from the spectrum floor (every view
        with ``generation='iteration'``).
        """
        c = self.ncut
        x = features.double()  # cosines near 1: float32 would round them
        with torch.autocast(x.device.type, enabled=False):
            self.feature_cosine = mean_token_cosine(x).float().cpu()
            W = affinity(x, c['tau'], c['eps'])
            if exact:
                y1, self.solver_log = fiedler_vector_exact(W)
            else:  # float32 products
                y1, self.solver_log = fiedler_vector(
                    W, c['tol'], c['max_iters'], block=c['block'],
                    power_steps=c['power_steps'], patience=c['patience'],
                    floor=spectrum_floor(x, W), warn=warn,
                    dtype=torch.float32)
            return object_relevance(x, y1.double())

    @property
    def degenerate(self) -> torch.Tensor:
        """Per image of the last solve: features near-uniform (mean token
        cosine above ``ncut.degenerate_cos``)."""
        return self.feature_cosine > self.ncut['degenerate_cos']

    def describe_features(self) -> str:
        """Which features the cut reads, for log messages."""
        what = 'A(XW^V)' if self.features == 'values' else 'output'
        return f'{what} of encoder block {self.feature_layer}'

    @torch.no_grad()
    def image_relevance(self, inputs: torch.Tensor, warn: bool = True,
                        exact: bool = False) -> torch.Tensor:
        """S of whole (preprocessed) images, B x L."""
        tokens = self.backbone.embed(inputs)
        return self.relevance_from_features(self.token_features(tokens),
                                            warn, exact)

    def generation_due(self, progress: int) -> bool:
        """Whether the cache must be (re)computed before this iteration."""
        if not self.informed or self.generation == 'iteration':
            return False
        if self.cache is None or self.cache.generated_at is None:
            return True
        return (self.generation == 'refresh' and progress -
                self.cache.generated_at >= self.refresh_interval)

    def new_cache(self, num_images: int) -> None:
        self.cache = RelevanceCache(num_images,
                                    tuple(self.backbone.patch_resolution))

    def store_relevance(self, indices: torch.Tensor, maps,
                        progress: int) -> None:
        """Keep a whole generation pass (every image) under ``progress``:
        ``maps`` is B x L relevance or its
        :func:`~.relevance_cache.encode` triple."""
        if isinstance(maps, torch.Tensor):
            self.cache.store(indices, maps)
        else:
            self.cache.store_encoded(indices, *maps)
        if not bool(self.cache.filled.all()):
            missing = (~self.cache.filled).nonzero().squeeze(-1)
            raise RuntimeError(f'relevance generation left '
                               f'{len(missing)} images without a map, '
                               f'e.g. {missing[:8].tolist()}')
        self.cache.refreshes += 1
        self.cache.generated_at = int(progress)

    # ------------------------------------------------------------ masking
    def mask(self, inputs: torch.Tensor,
             data_samples: Optional[List[DataSample]] = None):
        """Random masks before T, informed masks from T on."""
        tokens = self.backbone.embed(inputs)
        if not self.informed:
            return tokens, self.masker(tokens, inputs,
                                       self.mask_context(data_samples))
        grid = tuple(self.backbone.patch_resolution)
        if self.generation == 'iteration':
            # S̃, normalised per image as the cached modes store it
            relevance = normalise(self.relevance_from_features(
                self.token_features(tokens)))[0].float()
        else:
            if self.cache is None:
                raise RuntimeError(
                    f"SelfGuidedMAE(generation={self.generation!r}) is "
                    'informed but has no relevance cache: add '
                    "dict(type='SelfGuidedHook') to custom_hooks")
            relevance = self.cache.lookup(data_samples, grid, tokens.device)
        context = InformedMaskContext(
            patch_resolution=grid, data_samples=data_samples,
            importance=relevance, hint_ratio=self.hint_ratio)
        return tokens, self.informed_masker(tokens, inputs, context)

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """MAE's loss; once informed, also logs (not optimised, plain
        tensors without grad) ``mask_specificity`` of the batch's masks and,
        with ``generation='iteration'``, the solver's products, cap share
        and the share of near-uniform features."""
        tokens, result = self.mask(inputs, data_samples)
        pred = self.reconstruct(tokens, result)
        losses = dict(loss=self.head.loss(pred, inputs, result.mask))
        if not self.informed:
            return losses
        losses['mask_specificity'] = mask_specificity(result.mask)
        if self.generation == 'iteration' and self.solver_log is not None:
            s = self.solver_log.summary()
            losses['sg_solver_products'] = torch.tensor(s['products_mean'])
            losses['sg_solver_cap_share'] = torch.tensor(s['cap_share'])
            losses['sg_degenerate_share'] = self.degenerate.float().mean()
        return losses
