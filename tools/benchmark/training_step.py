"""One training step of a config's model, as the Runner would run it.

:class:`TrainStepVariant` builds a config's model and optimizer wrapper the
way mmengine's Runner does (``MODELS.build`` in the config's
``default_scope``, the top-level ``data_preprocessor`` merged into the model,
``init_weights()``, ``build_optim_wrapper``) and runs its training step on a
synthetic batch of the config's crop size:

* ``model.train_step(data, optim_wrapper)``: plain MAE, Self-Guided MAE,
  CL-MAE (its MAE step and, every ``masker_update_interval`` steps, its
  masking-module step: one timed *cycle* is those n steps);
* ``model.outer_step(...)`` when ``train_cfg.type='MLOTrainLoop'``: one
  MLO-MAE outer iteration (K level-1 steps on K batches, the level-2 head
  step, every ``train_cfg.masker_update_interval`` iterations the level-3
  step; one cycle is those n outer iterations), as ``MLOTrainLoop.run_iter``
  calls it.

It times the steady state: a Self-Guided model's informed masker is switched
on (what ``SelfGuidedHook`` does at T) with its relevance cache filled from
the synthetic batch (unless it recomputes relevance every iteration); other
hooks do not run.  Precision: ``amp='bf16'`` sets
``model.amp='bf16'`` where the model class has that argument (MLO-MAE), else
every optimizer wrapper becomes ``AmpOptimWrapper(dtype='bfloat16')`` (a
config's ``BF16AmpOptimWrapper``, without loss scaler, is kept);
``amp='fp32'`` removes both.  ``compile=True`` sets ``model.compile=True``
where the class has it (``MaskedMAE`` and subclasses: per-block
``torch.compile``) and compiles the same blocks of other models (e.g.
mmpretrain's ``MAE``).  See docs/benchmarks.md.
"""
import copy
import math
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, DefaultScope

from .step_config import (accepts, compile_blocks, crop_size, model_class,
                          set_precision)
from .synthetic_batch import (activate_informed_masking, synthetic_batch,
                              to_device)


def _plain_key(key: str) -> str:
    return key.replace('_orig_mod.', '')


def _quiet(fn):
    """Run ``fn`` with mmengine's logger at WARNING (init_weights logs
    every parameter)."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        return fn()
    finally:
        logger.setLevel(level)


class TrainStepVariant:
    """One config's model, optimizer wrapper and training step.

    Args:
        name: the variant's name in the results.
        cfg: the config (changed in place: precision, compile, batch size).
        device: where the model runs.
        seed: weights from ``seed`` (then, if ``reference`` holds a state
            dict, every tensor of the same name and shape copied from it),
            steps from ``seed + 1`` with this variant's own random state.
        batch_size: images per (level-1) step; default the config's
            ``train_dataloader.batch_size``.
        amp, compile: see the module doc.
        phases: names of model methods to time inside the step (e.g.
            ``mae_step``, ``masker_step``, ``level1_step``).
        reference: a dict shared by the variants of one run: the first
            variant built stores its initial state dict in it, the others
            start from it where names and shapes match.
    """

    def __init__(self, name: str, cfg: Config, device: torch.device,
                 seed: int = 0, batch_size: Optional[int] = None,
                 amp: str = 'fp32', compile: bool = False,
                 phases: Sequence[str] = (),
                 reference: Optional[dict] = None) -> None:
        self.name, self.cfg, self.device = name, cfg, device
        self.seed = seed
        self.scope = cfg.get('default_scope', None)
        self.cls = model_class(cfg)
        self.precision = set_precision(cfg, amp, device)
        self.compile = compile
        self.native_compile = compile and accepts(self.cls, 'compile')
        if self.native_compile:
            cfg.model['compile'] = True
        train_cfg = cfg.get('train_cfg', {}) or {}
        self.outer = str(train_cfg.get('type', '')).endswith('MLOTrainLoop')
        loader = cfg.get('train_dataloader', {}) or {}
        self.batch_size = int(batch_size or loader.get('batch_size') or 0)
        if self.batch_size < 1:
            raise ValueError(f'benchmark: {name}: no batch size (set '
                             'train_dataloader.batch_size or --batch-size)')
        self.img_size = crop_size(cfg)
        self.phase_names = list(phases)
        self.reference = reference if reference is not None else {}
        self.model = None
        self.iter = 0
        self.warmup_steps = 0
        self.losses: List[float] = []
        self.cycle = 1  # known after build()

    # ------------------------------------------------------------ build
    def build(self) -> None:
        cfg = self.cfg
        model_cfg = copy.deepcopy(cfg.model)
        if cfg.get('data_preprocessor') is not None:  # as the Runner
            model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
        torch.manual_seed(self.seed)
        with DefaultScope.overwrite_default_scope(self.scope):
            model = MODELS.build(model_cfg)
            _quiet(model.init_weights)
            self.shared = self._share_weights(model)
            if self.compile and not self.native_compile:
                compile_blocks(model)
            model.to(self.device).train()
            self.model = model
            self._make_batches()
            self.sg_maskers = activate_informed_masking(model, self.batch)
            self.optim_wrapper = _quiet(
                lambda: build_optim_wrapper(model, cfg.optim_wrapper))
        if self.outer:
            if not hasattr(model, 'outer_step'):
                raise TypeError(f'benchmark: {self.name}: train_cfg.type is '
                                f'MLOTrainLoop but {type(model).__name__} '
                                'has no outer_step')
            self.cycle = int(cfg.train_cfg.get('masker_update_interval', 1))
        else:
            self.cycle = int(getattr(model, 'masker_update_interval', 1))
        self.phase_times = self._wrap_phases()
        torch.manual_seed(self.seed + 1)
        self.rng = self._get_rng()

    def _share_weights(self, model) -> dict:
        state = model.state_dict()
        if 'state' not in self.reference:
            self.reference['state'] = {
                _plain_key(k): v.detach().cpu().clone()
                for k, v in state.items()}
            self.reference['name'] = self.name
            return dict(source=None, copied=len(state), total=len(state))
        ref = self.reference['state']
        new = {}
        for k, v in state.items():
            r = ref.get(_plain_key(k))
            if r is not None and r.shape == v.shape:
                new[k] = r
        model.load_state_dict(new, strict=False)
        return dict(source=self.reference['name'], copied=len(new),
                    total=len(state))

    def _make_batches(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        grid = None
        backbone = getattr(self.model, 'backbone', None)
        if backbone is not None and hasattr(backbone, 'patch_resolution'):
            grid = int(backbone.patch_resolution[0])
        if not self.outer:
            self.batch = to_device(synthetic_batch(
                self.batch_size, self.img_size, g, grid=grid), self.device)
            self.batches = None
            return
        head = self.cfg.model.get('downstream_head', {}) or {}
        num_classes = int(head.get('num_classes', 10))
        train_cfg = self.cfg.train_cfg
        k = train_cfg.get('mae_batches_per_iter') or \
            self.model.options.hypergrad.unroll_steps
        self.mae_steps = int(self.model.options.hypergrad.unroll_steps)
        mae = [to_device(synthetic_batch(self.batch_size, self.img_size, g,
                                         grid=grid), self.device)
               for _ in range(k)]
        self.batch = mae[0]
        # MLOTrainLoop: K batches of one loader batch, or one reused by all
        self.mae_batch = mae[0] if k == 1 else mae
        self.labelled = []
        for part in ('train_split_dataloader', 'val_split_dataloader'):
            size = (train_cfg.get(part) or {}).get('batch_size') or \
                self.batch_size
            self.labelled.append(to_device(synthetic_batch(
                size, self.img_size, g, num_classes=num_classes),
                self.device))
        self.batches = True

    def _wrap_phases(self) -> Dict[str, List[float]]:
        import time

        from .timing import sync
        times = {}
        for name in self.phase_names:
            fn = getattr(self.model, name, None)
            if not callable(fn):
                continue
            times[name] = []

            def timed(*a, _fn=fn, _out=times[name], **kw):
                sync(self.device)
                t0 = time.perf_counter()
                result = _fn(*a, **kw)
                sync(self.device)
                _out.append(time.perf_counter() - t0)
                return result
            setattr(self.model, name, timed)
        return times

    # -------------------------------------------------------------- run
    def _get_rng(self):
        cuda = torch.cuda.get_rng_state(self.device) \
            if self.device.type == 'cuda' else None
        return torch.get_rng_state(), cuda

    def _set_rng(self, state) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def run(self, count: int) -> None:
        """``count`` training steps with this variant's random state."""
        self._set_rng(self.rng)
        for _ in range(count):
            self.losses.append(self.step())
        self.rng = self._get_rng()

    def step(self) -> torch.Tensor:
        """One training step; returns its (level-1) loss, not synchronised.
        """
        if self.outer:
            update = self.iter % self.cycle == 0
            logs = self.model.outer_step(
                self.mae_batch, self.labelled[0],
                self.labelled[1] if update else None,
                optim_wrapper=self.optim_wrapper, update_masker=update)
            loss = logs['loss_mae']
        else:
            data = dict(inputs=self.batch['inputs'],
                        data_samples=self.batch['data_samples'])
            loss = self.model.train_step(data, self.optim_wrapper)['loss']
        self.iter += 1
        return loss.detach()

    # ----------------------------------------------------------- report
    def end_warmup(self) -> None:
        """Phase times count the timed steps only."""
        for v in self.phase_times.values():
            v.clear()
        self.warmup_steps = self.iter

    def info(self) -> dict:
        steps = self.iter - self.warmup_steps
        losses = [float(x) for x in self.losses]
        if not all(math.isfinite(x) for x in losses):
            raise RuntimeError(f'benchmark: {self.name}: non-finite loss '
                               f'{losses}')
        out = dict(
            model=type(self.model).__name__,
            step='outer_step' if self.outer else 'train_step',
            steps_per_cycle=self.cycle, batch_size=self.batch_size,
            img_size=self.img_size, precision=self.precision,
            compile=('model.compile' if self.native_compile else
                     'per-block' if self.compile else False),
            modules=self.module_summary(),
            optimizer=type(self.optim_wrapper.optimizer).__name__ + (
                ' (fused)' if self.optim_wrapper.optimizer.defaults.get(
                    'fused') else '') if hasattr(self.optim_wrapper,
                                                  'optimizer') else None,
            params_m=sum(p.numel() for p in self.model.parameters()) / 1e6,
            weights_from=self.shared, first_step_loss=losses[0],
            last_step_loss=losses[-1])
        if self.outer:
            out['mae_steps_per_step'] = self.mae_steps
            out['labelled_batch_sizes'] = [
                len(b['data_samples']) for b in self.labelled]
        if self.sg_maskers:
            log = getattr(self.model, 'solver_log', None)
            out['sg_solver_products'] = (
                None if log is None else int(log.products.max()))
        if self.phase_times:
            out['phases'] = {
                name: dict(ms_per_call=1e3 * sum(t) / len(t) if t else None,
                           calls_per_step=len(t) / max(1, steps))
                for name, t in self.phase_times.items()}
        return out

    def module_summary(self) -> dict:
        """Backbone and neck classes, and the fast modules' compile mode
        (``'cuda'`` compiles on a GPU only)."""
        out = {}
        for part in ('backbone', 'neck'):
            m = getattr(self.model, part, None)
            if m is None:
                continue
            fwd = getattr(m, '_encode', None) or getattr(m, '_decode', None)
            out[part] = type(m).__name__ + (
                f' (compile={fwd.mode!r})' if fwd is not None else '')
        return out

    def count_flops(self) -> float:
        """FLOPs of one step (the mean over one cycle) by
        ``torch.utils.flop_counter`` (matmuls, convolutions, attention,
        forward and backward)."""
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter:
            self.run(self.cycle)
        return counter.get_total_flops() / self.cycle
