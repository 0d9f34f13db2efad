"""Several configs' training steps timed against the first, interleaved,
in one process (the CLI: ``tools/analysis_tools/benchmark.py``)."""
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import torch

from .step_config import load_config
from .timing import (PeakMemory, environment, ratio_table, summarise,
                     time_interleaved)
from .training_step import TrainStepVariant


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
