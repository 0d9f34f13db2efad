"""Self-Guided MAE's step cost against plain MAE (``--method sg-mae``).

Run through ``tools/benchmark.py --method sg-mae``.  Three ``MaskedMAE``
variants with the same architecture, weights, batch and optimizer are timed
in one process, in alternating order over ``--rounds``:

* ``mae``: ``RandomMasker`` (plain MAE, the reference);
* ``sg_iteration``: ``SelfGuidedMAE(generation='iteration')`` after the
  switch, informed masks from an extra no-grad encoder pass + Ncut on every
  step;
* ``sg_cached``: ``SelfGuidedMAE(generation='once')`` (the default; also
  what ``'refresh'`` does between refreshes) after the switch, informed
  masks read from a filled relevance cache through each sample's crop box
  and flip (random boxes and flips, fixed by the seed).

Each round builds the three models afresh and runs their steps
interleaved, one step of each in turn with the order rotating, because on a
shared machine load drifts within seconds and whole-variant blocks then
measure the load, not the variant.  Peak memory is the process' over a
round (all three models are alive together).

The cached modes also pay for their generation passes: one no-grad pass +
Ncut per image at T (``'once'``) and every k epochs (``'refresh'``).  ``refresh`` times one batch of it (eval mode, the
same batch size, once per step in the interleaved loop) and the amortised cost per training step is
``refresh_ms / k`` (an epoch has as many steps as a refresh has batches).
Printed: ms/step per variant, ratios to ``mae``, the refresh time (also
split into the encoder pass and the Ncut + relevance), the
cached mode's amortised ratio for each k of ``--refresh-intervals``, and the
Fiedler solver's iteration count.
"""
import gc
import json
import statistics
import time

import torch


def add_arguments(parser) -> None:
    g = parser.add_argument_group('sg-mae')
    g.add_argument('--sg-masker', default='{}',
                   help="JSON settings of SelfGuidedMAE's Ncut (both modes, "
                   'model.ncut), e.g. \'{"max_iters": 30}\'')
    g.add_argument('--refresh-intervals', default='1,5,10,20',
                   help='k values (epochs between cache refreshes) for the '
                   "cached mode's amortised cost")


def view_samples(batch_size: int, seed: int):
    """Data samples of random crops (30-100 % of the image) and flips."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed + 2)
    samples = []
    for i in range(batch_size):
        side = 0.3 + 0.7 * torch.rand(2, generator=g)
        x0, y0 = (torch.rand(2, generator=g) * (1 - side)).tolist()
        flip = bool(torch.rand(1, generator=g) < 0.5)
        samples.append(DataSample(metainfo=dict(
            sample_idx=i, crop_box=(x0, y0, x0 + float(side[0]),
                                    y0 + float(side[1])),
            flip=flip, flip_direction='horizontal' if flip else None)))
    return samples


@torch.no_grad()
def refresh_batch(model, inputs):
    """What SelfGuidedHook's generation pass does per batch."""
    return model.image_relevance(inputs, warn=False)


def interleaved_training(models, inputs, samples, args, device,
                         extras=None, first: int = 0) -> dict:
    """One step of each variant in turn (the order rotates every step), so
    that drifting load on a shared machine hits all variants alike.  A step
    is forward + backward + ``AdamW.step()`` as in benchmark.py.  Each
    callable of ``extras`` is timed once per step, after the steps."""
    extras = extras or {}
    import contextlib
    names = list(models)
    opts = {}
    for name, model in models.items():
        model.to(device).train()
        opts[name] = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=args.lr,
            betas=(0.9, 0.95), weight_decay=0.05)
    out = {n: dict(times=[], first_step_ms=None, first_step_loss=None)
           for n in names}
    cast = (torch.autocast(device.type, dtype=torch.bfloat16)
            if args.dtype == 'bf16' else contextlib.nullcontext())
    sync = (torch.cuda.synchronize if device.type == 'cuda'
            else (lambda: None))
    for i in range(args.warmup + args.steps):
        k = (i + first) % len(names)
        for name in names[k:] + names[:k]:
            model, opt = models[name], opts[name]
            torch.manual_seed(args.seed + 1 + i)  # the same random masks
            sync()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with cast:
                loss = model.loss(inputs, samples)['loss']
            loss.backward()
            opt.step()
            sync()
            dt = time.perf_counter() - t0
            if i == 0:
                out[name].update(first_step_ms=dt * 1e3,
                                 first_step_loss=loss.detach().float().item())
            if i >= args.warmup:
                out[name]['times'].append(dt)
        for name, fn in extras.items():
            times = out.setdefault(name, dict(times=[]))['times']
            if i >= args.warmup:
                bench_time(fn, sync, times)
            else:
                fn()
    return out


def bench_time(fn, sync, out) -> None:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    out.append(time.perf_counter() - t0)


def run(args, bench) -> dict:
    from mlmask_mm.models.algorithms.relevance_cache import RelevanceCache
    from mmengine.logging import MMLogger

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu')
                          if args.device == 'auto' else args.device)
    ours, _, summary = bench.build_cfgs(args)
    sg_kwargs = json.loads(args.sg_masker)
    random = dict(type='RandomMasker', mask_ratio=bench.MASK_RATIO)
    cfgs = dict(
        mae=dict(ours, masker=random),
        sg_iteration=dict(ours, type='SelfGuidedMAE', masker=random,
                          generation='iteration', ncut=sg_kwargs),
        sg_cached=dict(ours, type='SelfGuidedMAE', masker=random,
                       generation='once', ncut=sg_kwargs))

    torch.manual_seed(args.seed)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        ref = bench.build(cfgs['sg_iteration'])
        ref.init_weights()
    finally:
        logger.setLevel(level)
    state = {k: v.detach().clone() for k, v in ref.state_dict().items()
             if torch.is_tensor(v)}  # not SelfGuidedMAE's _extra_state
    g = torch.Generator().manual_seed(args.seed)
    img = summary['img_size']
    inputs = torch.randn(args.batch_size, 3, img, img, generator=g).to(device)
    samples = view_samples(args.batch_size, args.seed)
    grid = (img // summary['patch_size'], ) * 2

    # the refresh: one batch of whole images, eval mode, no grad; timed
    # in the interleaved loop, its two parts too
    ref.to(device).eval()
    with bench.autocast(device, args.dtype), torch.no_grad():
        maps = refresh_batch(ref, inputs)
        features = ref.token_features(ref.backbone.embed(inputs))
    cache = RelevanceCache(args.batch_size, grid)
    cache.store(torch.arange(args.batch_size), maps)

    def timed(fn):
        def call():
            with bench.autocast(device, args.dtype), torch.no_grad():
                fn()
        return call

    extras = dict(
        refresh=timed(lambda: refresh_batch(ref, inputs)),
        refresh_encoder_pass=timed(lambda: ref.token_features(
            ref.backbone.embed(inputs))),
        refresh_ncut_and_relevance=timed(
            lambda: ref.relevance_from_features(features, warn=False)))

    memory = bench.PeakMemory(device)
    names = list(cfgs)
    runs = {name: [] for name in names}
    solver_iters, refresh_ms = [], {}
    for r in range(args.rounds):
        models = {}
        for name in names:
            models[name] = bench.build(cfgs[name])
            models[name].load_state_dict(state, strict=False)
        for name in ('sg_iteration', 'sg_cached'):  # after the switch
            models[name].start_informed(0, 0)
        models['sg_cached'].cache = cache
        memory.reset()
        times = interleaved_training(models, inputs, samples, args, device,
                                     extras, first=r)
        for name in names:
            runs[name].append(dict(times[name], peak_mem_mb=memory.peak_mb()))
        for name in extras:
            refresh_ms.setdefault(name, []).extend(
                t * 1e3 for t in times[name]['times'])
        solver_iters.append(int(
            models['sg_iteration'].solver_log.products.max()))
        del models
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    results = {n: bench.summarise(runs[n], args.batch_size) for n in names}
    base = results['mae']['ms_per_step']
    refresh = statistics.median(refresh_ms['refresh'])
    cached = results['sg_cached']['ms_per_step']
    intervals = [int(k) for k in args.refresh_intervals.split(',')]
    out = dict(
        config=dict(summary, batch_size=args.batch_size, steps=args.steps,
                    warmup=args.warmup, rounds=args.rounds, dtype=args.dtype,
                    seed=args.seed, sg_masker=sg_kwargs),
        environment=dict(
            device=str(device), device_name=bench.device_name(device),
            torch=torch.__version__, threads=torch.get_num_threads(),
            date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            load_average=list(_loadavg())),
        variants=results,
        step_cost_vs_mae=dict(
            sg_iteration=results['sg_iteration']['ms_per_step'] / base,
            sg_cached=cached / base),
        refresh=dict(ms_per_batch=refresh,
                     timed=len(refresh_ms['refresh']),
                     solver_iters=int(ref.solver_log.products.max()),
                     encoder_pass_ms=statistics.median(
                         refresh_ms['refresh_encoder_pass']),
                     ncut_and_relevance_ms=statistics.median(
                         refresh_ms['refresh_ncut_and_relevance'])),
        sg_cached_amortised_vs_mae={
            f'k={k}': (cached + refresh / k) / base for k in intervals},
        sg_iteration_solver_iters=solver_iters,
        memory_kind=memory.kind)
    return out


def _loadavg():
    try:
        with open('/proc/loadavg') as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return []
