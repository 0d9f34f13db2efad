"""Start Self-Guided MAE's informed masking when the MAE is ready (§3.2, §4)."""
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mlmask_mm.engine.exploitation import measure_exploitation
from mlmask_mm.registry import HOOKS
from mlmask_mm.utils.rng_state import get_rng_state, set_rng_state


SEEN_BELOW = 'sg_seen_R_MO_below_R_VO'  # message-hub info, resumed


@HOOKS.register_module()
class SelfGuidedStartHook(Hook):
    """Switch from random to informed masks; schedule the hint ratio.

    The model's masker must be a ``CompositeMasker`` over
    ``[RandomMasker, SelfGuidedMasker]``.  Every ``interval`` epochs (or
    iterations with ``by_epoch=False``) the hook measures the exploitation
    rates of the last decoder layer on ``num_images`` fixed training images
    under random masks, logs ``sg/R_VO`` and ``sg/R_MO``, and switches to the
    informed masker once R_{M→O} ≥ R_{V→O} — or at ``start`` (epoch or
    iteration) when that is given.  ``rates='per_token'`` measures the
    rates normalised per key token (:func:`exploitation_rates`), and
    ``require_crossing=True`` switches only at a check where R_{M→O} ≥
    R_{V→O} after a check where it was below (remembered in the message
    hub, so across resumes too): with per-token rates a near-uniform
    attention at initialisation is a tie, not a signal.  The switch lives in
    the masker's
    ``active`` buffer, so checkpoints carry it and a resumed run continues in
    the right mode.  The hint ratio goes linearly from ``hint_ratio[0]`` to
    ``hint_ratio[1]`` over training.
    """

    priority = 'NORMAL'

    def __init__(self,
                 start: Optional[int] = None,
                 interval: int = 1,
                 by_epoch: bool = True,
                 num_images: int = 32,
                 hint_ratio: Sequence[float] = (0.05, 0.05),
                 rates: str = 'sum',
                 require_crossing: bool = False) -> None:
        if rates not in ('sum', 'per_token'):
            raise ValueError("SelfGuidedStartHook: rates must be 'sum' or "
                             f"'per_token', got {rates!r}")
        self.rates = rates
        self.require_crossing = require_crossing
        self.start = start
        self.interval = interval
        self.by_epoch = by_epoch
        self.num_images = num_images
        self.hint_ratio = tuple(hint_ratio)
        self._batch = None

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def _maskers(self, runner):
        masker = self._model(runner).masker
        subs = getattr(masker, 'maskers', None)
        if (subs is None or len(subs) != 2
                or type(subs[0]).__name__ != 'RandomMasker'
                or type(subs[1]).__name__ != 'SelfGuidedMasker'):
            raise TypeError(
                'SelfGuidedStartHook needs model.masker = CompositeMasker('
                "mode='switch', maskers=[RandomMasker, SelfGuidedMasker]), "
                f'got {masker!r}')
        return masker

    def before_train(self, runner) -> None:
        informed = self._maskers(runner).maskers[1]
        if informed.mode == 'cached' and not any(
                type(h).__name__ == 'SelfGuidedCacheHook'
                for h in runner.hooks):
            raise ValueError(
                "SelfGuidedMasker(mode='cached') reads its relevance maps "
                "from a cache: add dict(type='SelfGuidedCacheHook', "
                'interval=k) to custom_hooks')

    def switched(self, runner) -> bool:
        return int(self._maskers(runner).active) == 1

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        lo, hi = self.hint_ratio
        progress = runner.iter / max(runner.max_iters, 1)
        ratio = lo + (hi - lo) * progress
        self._maskers(runner).maskers[1].set_hint_ratio(ratio)
        runner.message_hub.update_scalar('train/sg_hint_ratio', ratio)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not self.by_epoch and self.every_n_train_iters(
                runner, self.interval):
            self._check(runner, runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self._check(runner, runner.epoch + 1)

    def measure(self, runner):
        """Rates of the last decoder layer under random masks."""
        model = self._model(runner)
        masker = self._maskers(runner)
        if self._batch is None:
            dataset = runner.train_dataloader.dataset
            n = min(self.num_images, len(dataset))
            state = get_rng_state()
            try:
                samples = [dataset[i] for i in range(n)]
            finally:
                set_rng_state(state)
            self._batch = runner.train_dataloader.collate_fn(samples)
        state = get_rng_state()
        active = int(masker.active)
        try:
            torch.manual_seed(0)
            masker.set_active(0)
            inputs = model.data_preprocessor(self._batch, False)['inputs']
            was_training = model.training
            model.eval()
            rates = measure_exploitation(
                model, inputs, per_token=self.rates == 'per_token')[-1]
            model.train(was_training)
        finally:
            masker.set_active(active)
            set_rng_state(state)
        return float(rates['R_VO']), float(rates['R_MO'])

    def _check(self, runner, progress: int) -> None:
        r_vo, r_mo = self.measure(runner)
        runner.message_hub.update_scalar('train/sg_R_VO', r_vo)
        runner.message_hub.update_scalar('train/sg_R_MO', r_mo)
        runner.logger.info(f'self-guided: R_V->O={r_vo:.4f} '
                           f'R_M->O={r_mo:.4f}')
        if self.switched(runner):
            return
        hub = runner.message_hub
        if self.start is not None:
            due = progress >= self.start
        elif self.require_crossing:
            due = r_mo >= r_vo and bool(hub.get_info(SEEN_BELOW, False))
            if r_mo < r_vo:
                hub.update_info(SEEN_BELOW, True)
        else:
            due = r_mo >= r_vo
        if due:
            self._maskers(runner).set_active(1)
            unit = 'epoch' if self.by_epoch else 'iteration'
            runner.logger.info(f'self-guided: informed masking from {unit} '
                               f'{progress} on')
