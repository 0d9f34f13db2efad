"""``tools/benchmark.py --method cl-mae``: CL-MAE's step cost vs plain MAE.

Times :meth:`CLMAE.train_step` as training runs it (data preprocessor, the
MAE step, every n iterations the masking-module step, both through the
``OptimWrapperDict`` of :class:`PartsOptimWrapperConstructor`) against a
plain ``MaskedMAE`` (random masks) through mmengine's ``train_step`` with one
``OptimWrapper``, in the same process: the same architecture, batch, AdamW
settings and MAE weights (the masking module is initialised from the same
seed in every CL-MAE variant).

The cost of a variant is its **mean** time per ``train_step`` over a
multiple of n steps (with n > 1 the steps alternate between cheap and
expensive ones, a median would hide the module step), relative to the mean
of the plain MAE step.  All variants of a round live side by side and are
timed interleaved: in turns of lcm(n) consecutive steps each, the order
rotating, so that load that comes and goes hits them alike; ``--rounds``
rebuilds them all.  Peak memory is the process' peak during a variant's
warm-up (on CPU its RSS; the other variants' weights are counted too).
Per variant also: the mean time of the MAE step and of the module step
(the two halves of ``train_step``) and, once per masking module, the
module's no-graph forward alone (the part of the MAE step that plain MAE
does not have); ``--breakdown`` adds the parts of the two steps timed alone.

Variants: the product of ``--intervals`` (n, ``masker_update_interval``),
``--masker-layers``, ``--masker-dims`` (0 = the encoder's width, else a
narrower module with an input projection) and ``--masker-batch-sizes``
(k, ``masker_batch_size``; 0 = the whole batch).  Goals (issue 6): ≤ 1.8x at
n = 1, ≤ 1.3x at n = 4; each variant reports whether it meets the goal of
its n.

Example (run (A) of docs/benchmarks.md)::

    PYTHONPATH=. python tools/benchmark.py --method cl-mae --arch demo \\
        --batch-size 64 --threads 1 --steps 8 --warmup 4 --rounds 2 \\
        --masker-layers 2 5 --intervals 1 4 --breakdown
"""
import argparse
import contextlib
import datetime
import gc
import math
import os
import platform
import time
from typing import Dict, List, Optional

import torch

# issue 6: step cost relative to plain MAE, per module-step interval n
GOALS = {1: 1.8, 4: 1.3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group('--method cl-mae')
    g.add_argument('--intervals', type=int, nargs='+', default=[1, 4],
                   help='masker_update_interval values n (default: 1 4)')
    g.add_argument('--masker-layers', type=int, nargs='+', default=[2],
                   help='transformer blocks of the masking module '
                   '(default: 2; published: 5)')
    g.add_argument('--masker-dims', type=int, nargs='+', default=[0],
                   help="the module's width; 0 = the encoder's (default)")
    g.add_argument('--masker-batch-sizes', type=int, nargs='+', default=[0],
                   help='masker_batch_size k of the module step; 0 = the '
                   'whole batch (default)')
    g.add_argument('--breakdown', action='store_true',
                   help='also time the parts of the two steps alone '
                   '(median of --steps repetitions, per module shape and k)')


def check_args(args: argparse.Namespace) -> None:
    """One clear error per bad setting, before anything is built."""
    for n in args.intervals:
        if n < 1:
            raise SystemExit(f'--intervals: every n must be >= 1, got {n}')
    for layers in args.masker_layers:
        if layers < 1:
            raise SystemExit(
                f'--masker-layers: must be >= 1, got {layers}')
    for dims in args.masker_dims:
        if dims < 0:
            raise SystemExit(f'--masker-dims: must be >= 0, got {dims}')
    for k in args.masker_batch_sizes:
        if k and not 2 <= k <= args.batch_size:
            raise SystemExit(
                f'--masker-batch-sizes: k={k} must be 0 (whole batch) or '
                f'between 2 and --batch-size {args.batch_size}')
    if args.batch_size < 2:
        raise SystemExit('--method cl-mae needs --batch-size >= 2 (L_div '
                         f'compares images), got {args.batch_size}')
    if args.compile:
        raise SystemExit('--compile is not supported with --method cl-mae')
    if args.dtype == 'bf16':
        raise SystemExit('--dtype bf16 is not supported with --method '
                         'cl-mae (fp32 only)')


def masker_heads(dims: int, encoder_dims: int, encoder_heads: int) -> int:
    """The encoder's heads at its width; else the encoder's head width
    (dims // heads) where it divides, fewer heads otherwise."""
    if dims == encoder_dims:
        return encoder_heads
    heads = max(1, dims // max(1, encoder_dims // encoder_heads))
    while dims % heads:
        heads -= 1
    return heads


def variant_cfgs(mae_cfg: dict, args, summary) -> Dict[str, dict]:
    """name -> CLMAE config, for the product of the CL-MAE settings."""
    arch = summary['arch_settings']
    enc_dims, enc_heads = arch['embed_dims'], arch['num_heads']
    out = {}
    for layers in args.masker_layers:
        for dims in args.masker_dims:
            width = dims or enc_dims
            masker = dict(type='CurriculumMasker', num_layers=layers,
                          embed_dims=width, in_channels=enc_dims,
                          num_heads=masker_heads(width, enc_dims, enc_heads),
                          mask_ratio=summary['mask_ratio'])
            for k in args.masker_batch_sizes:
                for n in args.intervals:
                    cfg = {key: v for key, v in mae_cfg.items()
                           if key != 'masker'}
                    cfg.update(type='CLMAE', masker=masker,
                               masker_update_interval=n,
                               masker_batch_size=k or None)
                    name = f'cl-mae_{layers}blk_d{width}_k{k or "B"}_n{n}'
                    out[name] = cfg
    return out


def optim_cfg(args) -> dict:
    return dict(type='OptimWrapper',
                optimizer=dict(type='AdamW', lr=args.lr, betas=(0.9, 0.95),
                               weight_decay=0.05))


def build_optim_wrapper(model, args):
    """CL-MAE: ``OptimWrapperDict(mae, masker)`` through its constructor;
    plain MAE: one ``OptimWrapper`` through mmengine's default one."""
    from mlmask_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS
    if hasattr(model, 'masker_step'):
        ctor = dict(type='PartsOptimWrapperConstructor',
                    optim_wrapper_cfg=dict(mae=optim_cfg(args),
                                           masker=optim_cfg(args)))
    else:
        ctor = dict(type='DefaultOptimWrapperConstructor',
                    optim_wrapper_cfg=optim_cfg(args))
    return OPTIM_WRAPPER_CONSTRUCTORS.build(ctor)(model)


def build_model(cfg: dict, mae_state: dict, args, bench):
    """A model with the reference MAE weights; a masking module initialised
    from ``seed + 2`` (the same module in every variant of its shape)."""
    torch.manual_seed(args.seed + 2)  # the module's Linear layers
    model = bench.build(cfg)
    if hasattr(model, 'masker_step'):
        quiet(model.masker.init_weights)
    missing, unexpected = model.load_state_dict(mae_state, strict=False)
    extra = [k for k in missing if not k.startswith('masker.')
             and k not in ('curriculum_factor', 'train_iter')]
    if extra or unexpected:
        raise RuntimeError(f'weights do not match: missing {extra}, '
                           f'unexpected {unexpected}')
    return model


def quiet(fn):
    """Run ``fn`` with mmengine's logger at WARNING (init_weights logs every
    parameter)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        return fn()
    finally:
        logger.setLevel(level)


class PhaseTimer:
    """Wall time of the model's ``mae_step`` / ``masker_step`` calls (the
    instance attributes shadow the methods; synchronised on CUDA)."""

    def __init__(self, model, device, bench) -> None:
        self.times = {}
        for name in ('mae_step', 'masker_step'):
            if hasattr(model, name):
                self.times[name] = []
                setattr(model, name, self._wrap(getattr(model, name),
                                                self.times[name], device,
                                                bench))

    @staticmethod
    def _wrap(fn, out: List[float], device, bench):
        def timed(*a, **kw):
            bench.sync(device)
            t0 = time.perf_counter()
            result = fn(*a, **kw)
            bench.sync(device)
            out.append(time.perf_counter() - t0)
            return result
        return timed

    def clear(self) -> None:
        for v in self.times.values():
            v.clear()


class Variant:
    """One model under test: its optimizers, its step times, its phases."""

    def __init__(self, model, args, device, bench) -> None:
        self.model = model.to(device).train()
        self.optim_wrapper = build_optim_wrapper(model, args)
        self.phases = PhaseTimer(model, device, bench)
        self.times: List[float] = []
        self.losses: List[float] = []
        self.device, self.bench = device, bench

    def steps(self, inputs, samples, count: int, timed: bool) -> None:
        """``count`` calls of ``model.train_step`` as the train loop makes
        them (a fresh data dict each time)."""
        for _ in range(count):
            data = dict(inputs=inputs, data_samples=samples)
            self.bench.sync(self.device)
            t0 = time.perf_counter()
            log_vars = self.model.train_step(data, self.optim_wrapper)
            self.bench.sync(self.device)
            if timed:
                self.times.append(time.perf_counter() - t0)
            self.losses.append(log_vars['loss'].detach().item())

    def result(self, peak_mem_mb: float) -> dict:
        if not all(math.isfinite(x) for x in self.losses):
            raise RuntimeError(f'non-finite loss: {self.losses}')
        return dict(times=self.times, phases=dict(self.phases.times),
                    first_step_loss=self.losses[0],
                    last_step_loss=self.losses[-1], peak_mem_mb=peak_mem_mb)


def time_round(variants: Dict[str, dict], mae_state, inputs, samples, args,
               device, memory, bench, cycle: int, steps: int,
               warmup: int):
    """Build every variant, warm each up, then time them **interleaved**:
    ``steps / cycle`` turns, in each turn every variant runs ``cycle``
    consecutive steps (a whole number of its module-step cycles), the order
    rotating from turn to turn; load that comes and goes on a shared
    machine then hits all variants alike.  Returns (results, the variants).
    """
    names = list(variants)
    built: Dict[str, Variant] = {}
    peak = {}
    for name in names:
        memory.reset()
        torch.manual_seed(args.seed + 1)
        built[name] = Variant(build_model(variants[name], mae_state, args,
                                          bench), args, device, bench)
        built[name].steps(inputs, samples, warmup, timed=False)
        built[name].phases.clear()
        peak[name] = memory.peak_mb()
    for turn in range(steps // cycle):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            built[name].steps(inputs, samples, cycle, timed=True)
    return {name: v.result(peak[name]) for name, v in built.items()}, built


def masker_forward_ms(model, inputs, device, bench, reps: int) -> float:
    """Median of the module's no-graph forward on the batch (what the MAE
    step adds to plain MAE's step)."""
    model.to(device).train()
    with torch.no_grad():
        tokens = model.backbone.embed(model.data_preprocessor(
            dict(inputs=inputs, data_samples=None), True)['inputs'])
        for _ in range(2):
            model.masker(tokens)
        out: List[float] = []
        for _ in range(reps):
            bench._time_once(lambda: model.masker(tokens), device, out)
    return sorted(out)[len(out) // 2]


def time_parts(model, inputs, k: int, device, bench, reps: int) -> dict:
    """The parts of the two steps alone, on the variant's model (median ms
    of ``reps``, the parts interleaved; k = the module step's batch):

    ``embed``: patch embedding (no graph); ``masker_fwd_nograd``: the
    module's forward of the MAE step; ``mae_fwd_bwd``: MAE's forward and
    backward on the module's top-k mask (weight gradients of the MAE);
    ``masker_fwd_bwd``: the module's forward and backward of the module
    step; ``soft_fwd_nograd``: the soft full-token pass (encoder + decoder
    on all L tokens) without a graph; ``soft_fwd_bwd``: the same with the
    MAE frozen and the gradient to the scores only, plus L_rec^soft (the
    module step's cost on top of ``masker_fwd_bwd``).
    """
    from mlmask_mm.models.algorithms.cl_mae import frozen
    from mlmask_mm.models.losses import soft_reconstruction_loss
    model.to(device).train()
    x = model.data_preprocessor(dict(inputs=inputs, data_samples=None),
                                True)['inputs']
    xk = x[:k]
    with torch.no_grad():
        tokens = model.backbone.embed(x)
        result = model.masker(tokens)
        scores_k = result.scores[:k].detach()
    tokens_k = tokens[:k]

    def mae_fwd_bwd():
        t = model.backbone.embed(x)
        pred = model.reconstruct(t, result)
        model.head.loss(pred, x, result.mask).backward()

    def masker_fwd_bwd():
        model.masker(tokens_k).scores.sum().backward()

    def soft_fwd_nograd():
        with torch.no_grad():
            model.soft_reconstruct(tokens_k, scores_k)

    def soft_fwd_bwd():
        with frozen(model.mae_parameters()):
            s = scores_k.clone().requires_grad_()
            pred = model.soft_reconstruct(tokens_k, s)
            soft_reconstruction_loss(model.per_patch_loss(pred, xk),
                                     s).backward()

    parts = dict(embed=lambda: model.backbone.embed(x).detach(),
                 masker_fwd_nograd=lambda: model.masker(tokens.detach()),
                 mae_fwd_bwd=mae_fwd_bwd, masker_fwd_bwd=masker_fwd_bwd,
                 soft_fwd_nograd=soft_fwd_nograd, soft_fwd_bwd=soft_fwd_bwd)
    times: Dict[str, List[float]] = {name: [] for name in parts}
    for _ in range(reps + 1):  # the first one untimed; parts interleaved
        for name, fn in parts.items():
            model.zero_grad(set_to_none=True)
            with torch.no_grad() if name == 'masker_fwd_nograd' else \
                    contextlib.nullcontext():
                bench._time_once(fn, device, times[name])
    out = {f'{name}_ms': sorted(t[1:])[reps // 2]
           for name, t in times.items()}
    model.zero_grad(set_to_none=True)
    return out


def summarise(runs: List[dict], batch_size: int) -> dict:
    times = [t for r in runs for t in r['times']]
    ms = 1e3 * sum(times) / len(times)
    out = dict(
        ms_per_step=ms,
        images_per_s=batch_size / (ms / 1e3),
        timed_steps=len(times),
        round_means_ms=[1e3 * sum(r['times']) / len(r['times'])
                        for r in runs],
        first_step_loss=runs[0]['first_step_loss'],
        last_step_loss=runs[-1]['last_step_loss'],
        peak_mem_mb=max(r['peak_mem_mb'] for r in runs))
    for phase in runs[0]['phases']:
        ts = [t for r in runs for t in r['phases'][phase]]
        out[f'{phase}_ms'] = 1e3 * sum(ts) / len(ts) if ts else None
        out[f'{phase}_calls'] = len(ts)
    return out


def run(args: argparse.Namespace, bench) -> dict:
    check_args(args)
    from mmengine.registry import init_default_scope
    init_default_scope('mlmask_mm')
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu')
                          if args.device == 'auto' else args.device)
    mae_cfg, _, summary = bench.build_cfgs(args)
    variants = dict(mae=mae_cfg, **variant_cfgs(mae_cfg, args, summary))
    # a multiple of every n: each variant times whole module-step cycles
    cycle = math.lcm(*args.intervals)
    steps = cycle * math.ceil(args.steps / cycle)
    warmup = cycle * math.ceil(args.warmup / cycle)

    torch.manual_seed(args.seed)
    ref = bench.build(mae_cfg)
    quiet(ref.init_weights)
    mae_state = {k: v.detach().clone() for k, v in ref.state_dict().items()
                 if not k.startswith('masker.')}
    params = sum(p.numel() for p in ref.parameters())
    del ref
    inputs, samples = bench.make_batch(args, summary, device)
    load_before = os.getloadavg()

    memory = bench.PeakMemory(device)
    names = list(variants)
    runs = {name: [] for name in names}
    masker_fwd, parts = {}, {}
    for r in range(args.rounds):
        results, built = time_round(variants, mae_state, inputs, samples,
                                    args, device, memory, bench, cycle,
                                    steps, warmup)
        for name in names:
            runs[name].append(results[name])
        for name in names:  # the parts, once per module shape (and k)
            if name == 'mae':
                continue
            model = built[name].model
            shape = name.rsplit('_k', 1)[0]
            if shape not in masker_fwd:
                masker_fwd[shape] = masker_forward_ms(
                    model, inputs, device, bench, reps=max(3, steps))
            key = name.rsplit('_n', 1)[0]
            if args.breakdown and key not in parts:
                parts[key] = time_parts(
                    model, inputs,
                    variants[name]['masker_batch_size'] or args.batch_size,
                    device, bench, reps=max(3, args.steps))
        del built, results
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    load_after = os.getloadavg()

    results = {name: summarise(runs[name], args.batch_size)
               for name in names}
    base = results['mae']['ms_per_step']
    for name, res in results.items():
        res['vs_mae'] = res['ms_per_step'] / base
        res['round_ratios_vs_mae'] = [
            a / b for a, b in zip(res['round_means_ms'],
                                  results['mae']['round_means_ms'])]
        if name != 'mae':
            n = variants[name]['masker_update_interval']
            res['masker_update_interval'] = n
            res['goal_vs_mae'] = GOALS.get(n)
            res['meets_goal'] = (res['vs_mae'] <= GOALS[n]) if n in GOALS \
                else None
            res['masker_forward_nograd_ms'] = masker_fwd[
                name.rsplit('_k', 1)[0]]
            if args.breakdown:
                res['parts_ms'] = parts[name.rsplit('_n', 1)[0]]

    out = dict(
        method='cl-mae',
        config=dict(summary, batch_size=args.batch_size, steps=steps,
                    warmup=warmup, rounds=args.rounds, dtype=args.dtype,
                    seed=args.seed, lr=args.lr, params_m_mae=params / 1e6,
                    intervals=args.intervals,
                    masker_layers=args.masker_layers,
                    masker_dims=args.masker_dims,
                    masker_batch_sizes=args.masker_batch_sizes),
        environment=dict(
            device=str(device), device_name=bench.device_name(device),
            torch=torch.__version__, threads=torch.get_num_threads(),
            python=platform.python_version(),
            date=datetime.datetime.now(datetime.timezone.utc).strftime(
                '%Y-%m-%d %H:%M UTC'),
            loadavg_before=list(load_before), loadavg_after=list(load_after)),
        memory_kind=memory.kind,
        goals_vs_mae={str(n): g for n, g in GOALS.items()},
        variants=results,
        ratios_step_time_vs_mae={name: res['vs_mae']
                                 for name, res in results.items()
                                 if name != 'mae'})
    return out
