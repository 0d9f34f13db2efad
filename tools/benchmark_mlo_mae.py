"""Cost of an MLO-MAE outer iteration against plain MAE (same process).

Loaded by ``tools/benchmark.py --method mlo-mae``.  One outer iteration of
``MLOMAE.outer_step`` is K level-1 MAE steps, one head step and (every n-th
iteration) the masking network's hypergradient step.  Timed, on the same
random batches and the same MAE weights:

* ``plain_mae``: one MaskedMAE training step (random masks, AdamW), the
  unit of cost;
* ``mlo_<mode>_n<n>``: MLOMAE outer iterations for mode ``exact`` and
  ``finite_difference`` and masker intervals n (default 1 and 5), in the
  ``--dtype`` of the run (bf16 = autocast for everything but the finite
  differences);
* ``betty_fp32_fd_n1``: a pipeline like the original code's (betty): all
  fp32, every second-order product by finite differences (the head term
  too: two backwards through the encoder instead of one double backward
  through the head), masking network fed the attached patch embeddings,
  masker updated every iteration.

One timed sample is the mean time of one whole cycle of n outer iterations
(the first with the masker step), so ``ms_per_step`` is the cost of an
average outer iteration.  Ratios: ``mlo / (K x plain)`` (the goals: n = 1
at most 4, n = 5 at most 1.6) and ``betty / mlo`` (goal: at least 4).
``level_ms`` splits the first round of each variant by level.

Example (CPU)::

    PYTHONPATH=. python tools/benchmark.py --method mlo-mae --arch demo \\
        --batch-size 32 --steps 2 --warmup 1 --rounds 2 --threads 2
"""
import gc
import json
import time
from typing import Dict, List

import torch

GOALS = dict(n1_max_ratio_vs_plain=4.0, n5_max_ratio_vs_plain=1.6,
             min_speedup_vs_betty=4.0)


def add_arguments(p) -> None:
    g = p.add_argument_group('mlo-mae')
    g.add_argument('--mlo-unroll-steps', type=int, default=2,
                   help='K level-1 MAE steps per outer iteration')
    g.add_argument('--mlo-unroll', default='exact',
                   choices=['exact', 'last'])
    g.add_argument('--mlo-modes', default='exact,finite_difference',
                   help='comma-separated hypergradient modes')
    g.add_argument('--mlo-intervals', default='1,5',
                   help='comma-separated masker update intervals n')
    g.add_argument('--mlo-masker', default='MLOTokenMasker',
                   help='MLOTokenMasker (light) or MLOMLPMasker (paper)')
    g.add_argument('--mlo-labelled-batch-size', type=int, default=None,
                   help='batch of the level-2/3 splits (default: '
                   '--batch-size)')
    g.add_argument('--mlo-num-classes', type=int, default=10)
    g.add_argument('--mlo-no-betty', action='store_true',
                   help='skip the all-fp32 finite-difference pipeline')
    g.add_argument('--mlo-flops', action='store_true',
                   help='also count FLOPs (torch.utils.flop_counter: '
                   'matmuls, convolutions, attention, forward and backward) '
                   'of each variant: independent of the machine load')
    g.add_argument('--mlo-flops-only', action='store_true',
                   help='count FLOPs, time nothing (e.g. ViT-B on CPU)')


def mlo_cfg(ours: dict, summary: dict, args, mode: str,
            betty: bool = False) -> dict:
    cfg = json.loads(json.dumps(ours))
    cfg.update(
        type='MLOMAE',
        masker=dict(type=args.mlo_masker, mask_ratio=summary['mask_ratio'],
                    detach_input=not betty),
        downstream_head=dict(
            type='LinearClsHead', num_classes=args.mlo_num_classes,
            in_channels=summary['arch_settings']['embed_dims'],
            loss=dict(type='CrossEntropyLoss')),
        hypergrad=dict(
            mode='finite_difference' if betty else mode,
            unroll_steps=args.mlo_unroll_steps, unroll=args.mlo_unroll,
            head_term='finite_difference' if betty else 'double_backward'),
        amp=None if betty or args.dtype == 'fp32' else 'bf16')
    return cfg


def labelled_batch(args, summary, device, seed):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    n = args.mlo_labelled_batch_size or args.batch_size
    img = summary['img_size']
    inputs = torch.randn(n, 3, img, img, generator=g)
    labels = torch.randint(0, args.mlo_num_classes, (n, ), generator=g)
    return dict(inputs=inputs.to(device),
                data_samples=[DataSample().set_gt_label(int(y))
                              for y in labels])


def optimizers(model, args):
    from mmengine.optim import OptimWrapper, OptimWrapperDict
    lrs = dict(mae=args.lr, head=1e-3, masker=1e-3)
    return OptimWrapperDict(**{
        part: OptimWrapper(torch.optim.AdamW(
            list(model.part_params(part).values()), lr=lr,
            betas=(0.9, 0.95), weight_decay=0.05))
        for part, lr in lrs.items()})


def _timed_levels(model, device, bench) -> Dict[str, List[float]]:
    """Wrap level1/2/3_step of this instance to record their times."""
    times = dict(level1=[], level2=[], level3=[])
    for name in times:
        fn = getattr(model, name + '_step')

        def wrapped(*a, _fn=fn, _name=name, **kw):
            bench.sync(device)
            t0 = time.perf_counter()
            out = _fn(*a, **kw)
            bench.sync(device)
            times[_name].append((time.perf_counter() - t0) * 1e3)
            return out
        setattr(model, name + '_step', wrapped)
    return times


def time_outer(model, batches, interval, args, device, memory,
               bench) -> dict:
    """Cycles of ``interval`` outer iterations; one sample per cycle."""
    mae, train, val = batches
    K = args.mlo_unroll_steps
    model.to(device).train()
    optim = optimizers(model, args)
    levels = _timed_levels(model, device, bench)
    memory.reset()
    torch.manual_seed(args.seed + 1)
    times, first_ms, first_logs = [], None, None
    for c in range(args.warmup + args.steps):
        bench.sync(device)
        t0 = time.perf_counter()
        for i in range(interval):
            logs = model.outer_step([mae] * K, train, val, optim,
                                    update_masker=(i == 0))
            if first_logs is None:
                first_logs = {k: float(v) for k, v in logs.items()}
        bench.sync(device)
        dt = (time.perf_counter() - t0) / interval
        if c == 0:
            first_ms = dt * 1e3
        if c == args.warmup - 1:  # level times of the timed cycles only
            for v in levels.values():
                v.clear()
        if c >= args.warmup:
            times.append(dt)
    level_ms = {k: sum(v) / max(1, len(times) * interval)
                for k, v in levels.items()}
    return dict(times=times, first_step_ms=first_ms,
                first_step_loss=first_logs['loss_mae'],
                peak_mem_mb=memory.peak_mb(), level_ms=level_ms,
                first_logs=first_logs)


def count_flops(model, batches, interval, args) -> float:
    """FLOPs of an average outer iteration of a cycle of ``interval``: one
    with the masker step, interval − 1 without."""
    from torch.utils.flop_counter import FlopCounterMode
    mae, train, val = batches
    optim = optimizers(model, args)
    model.train()
    flops = []
    for update in (True, False):
        with FlopCounterMode(display=False) as counter:
            model.outer_step([mae] * args.mlo_unroll_steps, train, val,
                             optim, update_masker=update)
        flops.append(counter.get_total_flops())
    return (flops[0] + (interval - 1) * flops[1]) / interval


def plain_flops(model, inputs, samples) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    model.train()
    with FlopCounterMode(display=False) as counter:
        model.loss(inputs, samples)['loss'].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def run(args, bench) -> dict:
    import datetime
    import platform

    from mmengine.logging import MMLogger

    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu')
                          if args.device == 'auto' else args.device)
    modes = [m for m in args.mlo_modes.split(',') if m]
    intervals = [int(n) for n in args.mlo_intervals.split(',') if n]
    ours, _, summary = bench.build_cfgs(args)
    ours['masker'] = dict(type='RandomMasker',
                          mask_ratio=summary['mask_ratio'])

    torch.manual_seed(args.seed)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter
    try:
        ref = bench.build(ours)
        ref.init_weights()
    finally:
        logger.setLevel(level)
    state = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    del ref

    inputs, samples = bench.make_batch(args, summary, device)
    mae_batch = dict(inputs=inputs, data_samples=samples)
    batches = (mae_batch, labelled_batch(args, summary, device, args.seed + 7),
               labelled_batch(args, summary, device, args.seed + 8))

    variants = [('plain_mae', None, None, 1)]
    for mode in modes:
        for n in intervals:
            variants.append((f'mlo_{mode}_n{n}', mode, False, n))
    if not args.mlo_no_betty:
        variants.append(('betty_fp32_fd_n1', 'finite_difference', True, 1))

    memory = bench.PeakMemory(device)
    runs = {name: [] for name, *_ in variants}
    levels = {}
    params = {}
    flops = {}
    if args.mlo_flops or args.mlo_flops_only:
        for name, mode, betty, n in variants:
            torch.manual_seed(args.seed)
            if mode is None:
                model = bench.build(ours).to(device)
                model.load_state_dict(state)
                flops[name] = plain_flops(model, inputs, samples)
            else:
                model = bench.build(mlo_cfg(ours, summary, args, mode,
                                            betty)).to(device)
                model.load_state_dict(state, strict=False)
                flops[name] = count_flops(model, batches, n, args)
            params[name] = sum(p.numel() for p in model.parameters()) / 1e6
            del model
            gc.collect()
    K = args.mlo_unroll_steps
    flops_out = {}
    if flops:
        unit = K * flops['plain_mae']
        flops_out = dict(
            gflop_per_step={k: v / 1e9 for k, v in flops.items()},
            ratio_vs_plain_same_mae_steps={
                k: v / unit for k, v in flops.items() if k != 'plain_mae'},
            speedup_vs_betty={
                k: flops['betty_fp32_fd_n1'] / v for k, v in flops.items()
                if k.startswith('mlo_') and k.endswith('_n1')
                and 'betty_fp32_fd_n1' in flops})
    if args.mlo_flops_only:
        return dict(method='mlo-mae', config=dict(
            summary, batch_size=args.batch_size,
            labelled_batch_size=args.mlo_labelled_batch_size or
            args.batch_size, unroll_steps=K, unroll=args.mlo_unroll,
            masker=args.mlo_masker, params_m=params), flops=flops_out)
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for name, mode, betty, n in order:
            torch.manual_seed(args.seed)
            if mode is None:
                model = bench.build(ours)
                model.load_state_dict(state)
                runs[name].append(bench.time_training(
                    model, inputs, samples, args, device, memory))
            else:
                model = bench.build(mlo_cfg(ours, summary, args, mode,
                                            betty))
                missing = model.load_state_dict(state, strict=False)
                assert not missing.unexpected_keys, missing
                res = time_outer(model, batches, n, args, device, memory,
                                 bench)
                levels.setdefault(name, res.pop('level_ms'))
                res.pop('first_logs')
                runs[name].append(res)
            params.setdefault(name, sum(p.numel()
                                        for p in model.parameters()) / 1e6)
            del model
            gc.collect()
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    results = {name: bench.summarise(runs[name], args.batch_size)
               for name in runs}
    plain = results['plain_mae']['ms_per_step']
    ratios = {name: res['ms_per_step'] / (K * plain)
              for name, res in results.items() if name != 'plain_mae'}
    speedup = {}
    if 'betty_fp32_fd_n1' in results:
        betty = results['betty_fp32_fd_n1']['ms_per_step']
        speedup = {name: betty / res['ms_per_step']
                   for name, res in results.items()
                   if name.startswith('mlo_') and name.endswith('_n1')}
    goals = {}
    for name, ratio in ratios.items():
        if name.endswith('_n1') and name.startswith('mlo_'):
            goals[name + ' <= 4x plain'] = ratio <= \
                GOALS['n1_max_ratio_vs_plain']
        if name.endswith('_n5'):
            goals[name + ' <= 1.6x plain'] = ratio <= \
                GOALS['n5_max_ratio_vs_plain']
    for name, s in speedup.items():
        goals[name + ' >= 4x faster than betty'] = s >= \
            GOALS['min_speedup_vs_betty']
    return dict(
        method='mlo-mae',
        config=dict(summary, batch_size=args.batch_size,
                    labelled_batch_size=args.mlo_labelled_batch_size or
                    args.batch_size,
                    unroll_steps=K, unroll=args.mlo_unroll,
                    masker=args.mlo_masker, steps=args.steps,
                    warmup=args.warmup, rounds=args.rounds, dtype=args.dtype,
                    seed=args.seed, params_m=params),
        environment=dict(
            device=str(device), device_name=bench.device_name(device),
            torch=torch.__version__, threads=torch.get_num_threads(),
            python=platform.python_version(),
            date=datetime.date.today().isoformat()),
        memory_kind=memory.kind,
        variants=results,
        level_ms_per_outer_iteration=levels,
        ratio_vs_plain_same_mae_steps=ratios,
        speedup_vs_betty=speedup,
        goals=goals,
        flops=flops_out)
