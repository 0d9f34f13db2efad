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
import inspect
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, DefaultScope

from mlmask_mm.engine.config_checks import transform_name

from .timing import (PeakMemory, environment, ratio_table, summarise,
                     time_interleaved)


def load_config(path: str, options: Optional[dict] = None) -> Config:
    """A config file (``mmpretrain::...`` paths too) with ``options``
    merged as ``--cfg-options`` would."""
    if '::' in path:  # a config of an installed OpenMMLab package
        from mmengine.hub import get_config
        cfg = get_config(path)
    elif not osp.isfile(path):
        raise FileNotFoundError(f'benchmark: config file not found: {path}')
    else:
        cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def crop_size(cfg: Config) -> int:
    """The side of the training images: the last crop/resize of
    ``train_dataloader.dataset.pipeline``, else ``model.backbone.img_size``.
    """
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    while isinstance(dataset, dict) and 'pipeline' not in dataset and \
            isinstance(dataset.get('dataset'), dict):  # dataset wrappers
        dataset = dataset['dataset']
    size = None
    for t in (dataset or {}).get('pipeline', []) or []:
        kind = transform_name(t)
        value = t.get('crop_size') if kind in ('RandomCrop',
                                                'CenterCrop') else None
        if value is None and ('Crop' in kind or kind == 'Resize'):
            value = t.get('scale')
        if value is not None:
            size = value
    if size is None:
        size = cfg.model.get('backbone', {}).get('img_size')
    if size is None:
        raise ValueError(
            'benchmark: cannot tell the crop size: no crop in '
            'train_dataloader.dataset.pipeline and no model.backbone.img_size'
            ' in the config')
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f'benchmark: only square crops, got {size}')
        size = size[0]
    return int(size)


def model_class(cfg: Config):
    scope = cfg.get('default_scope', None)
    with MODELS.switch_scope_and_registry(scope) as registry:
        cls = registry.get(cfg.model['type'])
    if cls is None:
        raise KeyError(f'benchmark: model type {cfg.model["type"]!r} is not '
                       f'registered (default_scope={scope!r})')
    return cls


def _accepts(cls, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


def wrapper_cfgs(optim_wrapper: dict) -> List[dict]:
    """The optimizer-wrapper configs of ``optim_wrapper``: itself, or the
    parts of a multi-part one (``dict(constructor=..., mae=dict(...), ...)``).
    """
    if 'optimizer' in optim_wrapper:
        return [optim_wrapper]
    return [v for v in optim_wrapper.values()
            if isinstance(v, dict) and 'optimizer' in v]


def set_precision(cfg: Config, amp: str, device: torch.device) -> str:
    """Apply ``amp`` ('fp32' or 'bf16') to the config; returns how."""
    if amp not in ('fp32', 'bf16'):
        raise ValueError(f"benchmark: --amp must be 'fp32' or 'bf16', got "
                         f'{amp!r}')
    wrappers = wrapper_cfgs(cfg.optim_wrapper)
    if not wrappers:
        raise ValueError('benchmark: the config\'s optim_wrapper has no '
                         f'optimizer: {cfg.optim_wrapper}')
    uses_model_amp = _accepts(model_class(cfg), 'amp')
    if uses_model_amp:
        cfg.model['amp'] = 'bf16' if amp == 'bf16' else None
    for w in wrappers:
        if amp == 'bf16' and not uses_model_amp:
            if device.type != 'cuda':
                raise ValueError(
                    'benchmark: --amp bf16 uses AmpOptimWrapper, which '
                    f'mmengine runs on GPUs only (device {device})')
            # a config's own AmpOptimWrapper subclass (BF16AmpOptimWrapper:
            # no loss scaler in bf16) is kept, anything else becomes one
            if not str(w.get('type', '')).endswith('AmpOptimWrapper'):
                w['type'] = 'AmpOptimWrapper'
            w['dtype'] = 'bfloat16'
        elif str(w.get('type', 'OptimWrapper')).endswith('AmpOptimWrapper'):
            w['type'] = 'OptimWrapper'
            w.pop('loss_scale', None)
            w.pop('dtype', None)
    if amp == 'fp32':
        return 'fp32'
    if uses_model_amp:
        return 'model.amp=bf16'
    kinds = sorted({str(w['type']).split('.')[-1] for w in wrappers})
    return '/'.join(kinds) + '(dtype=bfloat16)'


def compile_blocks(model: torch.nn.Module) -> None:
    """Per-block ``torch.compile`` of the encoder and decoder blocks, as
    ``MaskedMAE(compile=True)`` does, for models without that switch."""
    blocks = [getattr(getattr(model, 'backbone', None), 'layers', None),
              getattr(getattr(model, 'neck', None), 'decoder_blocks', None)]
    if blocks[0] is None:
        raise ValueError(f'benchmark: --compile: {type(model).__name__} has '
                         'no backbone.layers to compile')
    for seq in blocks:
        for block in seq or []:
            block.compile()  # in place, like MaskedMAE._compile


def synthetic_batch(batch_size: int, size: int, generator: torch.Generator,
                    num_classes: Optional[int] = None,
                    grid: Optional[int] = None) -> dict:
    """A collated batch as the train pipeline gives it: uint8 images
    B x 3 x size x size and data samples with ``sample_idx``, a random crop
    box and flip (what ``RecordedRandomResizedCrop``/``RandomFlip`` record),
    a class label if ``num_classes`` and a random patch-grid ``mask`` (read
    by ``RegionMasker``) if ``grid``."""
    from mmpretrain.structures import DataSample
    inputs = torch.randint(0, 256, (batch_size, 3, size, size),
                           generator=generator, dtype=torch.uint8)
    samples = []
    for i in range(batch_size):
        side = (0.3 + 0.7 * torch.rand(2, generator=generator)).tolist()
        x0, y0 = (torch.rand(2, generator=generator) *
                  (1 - torch.tensor(side))).tolist()
        flip = bool(torch.rand(1, generator=generator) < 0.5)
        s = DataSample(metainfo=dict(
            sample_idx=i, img_shape=(size, size), ori_shape=(size, size),
            crop_box=(x0, y0, x0 + side[0], y0 + side[1]), flip=flip,
            flip_direction='horizontal' if flip else None))
        if num_classes:
            s.set_gt_label(int(torch.randint(num_classes, (1, ),
                                             generator=generator)))
        if grid:
            s.set_field((torch.rand(grid, grid, generator=generator) <
                         0.5).float(), 'mask', dtype=torch.Tensor)
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def _to(batch: dict, device: torch.device) -> dict:
    return dict(batch, inputs=batch['inputs'].to(device))


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


@torch.no_grad()
def activate_informed_masking(model: torch.nn.Module, batch: dict) -> int:
    """Self-Guided MAE's steady state: a :class:`SelfGuidedMAE` is switched
    to informed masks (what ``SelfGuidedHook`` does at T) and, unless it
    computes relevance every iteration, its cache is filled from ``batch``
    (sample_idx 0..B-1, whole images, eval mode); returns 1 for such a
    model, else 0."""
    from mlmask_mm.models.algorithms.self_guided_mae import SelfGuidedMAE
    if not isinstance(model, SelfGuidedMAE):
        return 0
    model.start_informed(0, 0)
    if model.generation != 'iteration':
        was_training = model.training
        model.eval()
        try:
            data = model.data_preprocessor(batch, False)
            maps = model.image_relevance(data['inputs'], warn=False)
            model.new_cache(len(maps))
            model.store_relevance(torch.arange(len(maps)), maps.cpu().half(),
                                  progress=0)
        finally:
            model.train(was_training)
    return 1


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
        self.native_compile = compile and _accepts(self.cls, 'compile')
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
            self.batch = _to(synthetic_batch(self.batch_size, self.img_size,
                                             g, grid=grid), self.device)
            self.batches = None
            return
        head = self.cfg.model.get('downstream_head', {}) or {}
        num_classes = int(head.get('num_classes', 10))
        train_cfg = self.cfg.train_cfg
        k = train_cfg.get('mae_batches_per_iter') or \
            self.model.hypergrad.get('unroll_steps', 1)
        self.mae_steps = int(self.model.hypergrad.get('unroll_steps', 1))
        mae = [_to(synthetic_batch(self.batch_size, self.img_size, g,
                                   grid=grid), self.device) for _ in range(k)]
        self.batch = mae[0]
        # MLOTrainLoop: K batches of one loader batch, or one reused by all
        self.mae_batch = mae[0] if k == 1 else mae
        self.labelled = []
        for part in ('train_split_dataloader', 'val_split_dataloader'):
            size = (train_cfg.get(part) or {}).get('batch_size') or \
                self.batch_size
            self.labelled.append(_to(synthetic_batch(
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


def variant_name(path: str, index: int, names: Sequence[str]) -> str:
    base = osp.splitext(osp.basename(path.split('::')[-1]))[0]
    if '::' in path:
        base = path.split('::')[0] + '::' + base
    return base if base not in names else f'{base}#{index + 1}'


def benchmark_configs(configs: Sequence[str],
                      cfg_options: Optional[dict] = None,
                      options_of: Optional[Dict[int, dict]] = None,
                      batch_size: Optional[int] = None,
                      iters: int = 10,
                      warmup: int = 3,
                      amp: str = 'fp32',
                      compile: bool = False,
                      device: str = 'auto',
                      seed: int = 0,
                      phases: Sequence[str] = (),
                      flops: Union[bool, str] = False,
                      shared_init: bool = True) -> dict:
    """Time one training step of each config, interleaved, in one process.

    Args:
        configs: config paths; the first is the reference of the ratios.
        cfg_options: merged into every config (``--cfg-options``).
        options_of: index (0-based) -> options merged into that config only.
        flops: ``True``: also count each step's FLOPs (after the timing);
            ``'only'``: count them and time nothing (one cycle per config,
            each model freed before the next is built: ViT-B on a CPU).
        shared_init: start every variant from the first one's initial
            weights where names and shapes match (then e.g. this package's
            ``MaskedMAE`` and mmpretrain's ``MAE`` take the same first step).
        others: see :class:`TrainStepVariant` and :func:`time_interleaved`.

    Returns:
        the results as a JSON-able dict (``variants``, ``ratios_vs_first``).
    """
    import mlmask_mm  # noqa: F401  registers this package's modules
    if not configs:
        raise ValueError('benchmark: give at least one config')
    dev = torch.device(('cuda' if torch.cuda.is_available() else 'cpu')
                       if device == 'auto' else device)
    if flops and compile:
        raise ValueError('benchmark: --flops counts eager steps; drop '
                         '--compile')
    options_of = options_of or {}
    bad = [i for i in options_of if not 0 <= i < len(configs)]
    if bad:
        raise ValueError(f'benchmark: --cfg-options-of index {bad[0] + 1} '
                         f'is not among the {len(configs)} configs')
    reference = {} if shared_init else None
    variants, names, settings = {}, [], {}
    for i, path in enumerate(configs):
        options = dict(cfg_options or {})
        options.update(options_of.get(i, {}))
        cfg = load_config(path, options)
        name = variant_name(path, i, names)
        names.append(name)
        variants[name] = TrainStepVariant(
            name, cfg, dev, seed=seed, batch_size=batch_size, amp=amp,
            compile=compile, phases=phases,
            reference=reference if shared_init else {})
        settings[name] = dict(config=path, cfg_options=options)
    if flops == 'only':
        return _count_flops_only(variants, names, settings, seed,
                                 shared_init, dev)
    memory = PeakMemory(dev)
    load_before = environment(dev)['loadavg']
    raw = time_interleaved(variants, dev, iters, warmup, memory)
    results = {}
    for name, v in variants.items():
        res = summarise(raw[name], v.batch_size)
        res.update(v.info())
        res.update(settings[name])
        results[name] = res
    env = environment(dev)
    env['loadavg_before'] = load_before
    if flops:
        for name, v in variants.items():
            results[name]['gflop_per_step'] = v.count_flops() / 1e9
    base = results[names[0]]['ms_per_step']
    out = dict(
        settings=dict(iters=iters, warmup=warmup, amp=amp, compile=compile,
                      seed=seed, batch_size=batch_size,
                      shared_init=shared_init),
        environment=env, memory_kind=memory.kind, variants=results,
        ratios_vs_first={n: results[n]['ms_per_step'] / base
                         for n in names})
    if flops:
        f0 = results[names[0]]['gflop_per_step']
        out['flop_ratios_vs_first'] = {
            n: results[n]['gflop_per_step'] / f0 for n in names}
    out['table'] = ratio_table(names, results)
    return out


def _count_flops_only(variants, names, settings, seed, shared_init, dev):
    results = {}
    for name in names:
        v = variants[name]
        v.build()
        gflop = v.count_flops() / 1e9
        results[name] = dict(gflop_per_step=gflop, **v.info(),
                             **settings[name])
        v.model = v.optim_wrapper = None  # free it before the next one
    f0 = results[names[0]]['gflop_per_step']
    ratios = {n: results[n]['gflop_per_step'] / f0 for n in names}
    width = max(len(n) for n in names)
    table = [f'{"variant":<{width}}  {"GFLOP/step":>10}  {"x first":>7}']
    table += [f'{n:<{width}}  {results[n]["gflop_per_step"]:10.2f}  '
              f'{ratios[n]:7.3f}' for n in names]
    return dict(settings=dict(flops_only=True, seed=seed,
                              shared_init=shared_init),
                environment=environment(dev), variants=results,
                flop_ratios_vs_first=ratios, table=table)
