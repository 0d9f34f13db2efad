"""Time one MAE training step: this package's MaskedMAE vs mmpretrain's MAE.

Both models are built through ``mlmask_mm.registry.MODELS`` in the same
process with the same architecture, decoder, image size, batch size and
weights (ours is built first, mmpretrain's gets its state dict).  One step is
forward + backward + ``AdamW.step()`` on a random batch (no dataset, no data
preprocessor: the tensors go straight to ``model.loss``).  Printed as JSON:

* per variant: images/s and ms/step (median of the timed steps after the
  warm-up, pooled over ``--rounds``), the first step's time (with
  ``--compile`` it includes the compilation) and loss, peak memory
  (``torch.cuda.max_memory_allocated`` on GPU; on CPU the process' peak RSS,
  ``VmHWM``, reset per variant through ``/proc/self/clear_refs``);
* ratios ours / mmpretrain (images/s);
* the masking step alone: ours' ``masker(tokens, images, context)`` (and the
  same plus the gather of the visible tokens, which mmpretrain's function
  also does) vs mmpretrain's ``MAEViT.random_masking`` on the same tokens.

With ``--compile`` ours is built as ``MaskedMAE(compile=True)`` (each encoder
and decoder block goes through ``torch.compile``) and mmpretrain's MAE gets
the same per-block compile; eager and compiled variants are both reported.

Examples::

    PYTHONPATH=. python tools/benchmark.py --arch demo --batch-size 64
    PYTHONPATH=. python tools/benchmark.py --arch b --img-size 224 \\
        --patch-size 16 --batch-size 256 --dtype bf16 --compile \\
        --steps 20 --warmup 5

``--arch`` is ``demo`` (the package's ViT-tiny-p4 config,
``configs/_base_/models/mae_vit-tiny-p4.py``), an mmpretrain ViT arch name
(``b``, ``small`` = mmpretrain's 768-d 8-layer ViT-S, ``deit-small``, ...;
``tiny`` is taken as mmpretrain's ``deit-tiny``, 192-d 12 layers) or a JSON
dict with ``embed_dims``, ``num_layers``, ``num_heads``,
``feedforward_channels``.
"""
import argparse
import contextlib
import datetime
import gc
import json
import os
import os.path as osp
import platform
import resource
import statistics
import sys
import time
import types
from typing import Callable, Dict, List, Optional, Sequence

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run as `python tools/benchmark.py` from anywhere
    sys.path.insert(0, REPO)

DEMO_MODEL = osp.join(REPO, 'configs', '_base_', 'models',
                      'mae_vit-tiny-p4.py')
ARCH_ALIASES = {'tiny': 'deit-tiny'}
# mmpretrain's MAE decoder (configs/_base_/models/mae_vit-base-p16.py)
MMPRETRAIN_DECODER = dict(dim=512, depth=8, heads=16)
MASK_RATIO = 0.75


# --method: 'mae' is this file (MaskedMAE vs mmpretrain's MAE); every other
# method lives in tools/benchmark_<method>.py, which defines
# ``add_arguments(parser)`` and ``run(args, bench) -> dict`` (``bench`` is
# this module, for its shared helpers) and is timed against plain MaskedMAE
# in the same process.
METHODS = ('mae', 'sg-mae', 'cl-mae', 'mlo-mae')


def load_method(method: str):
    """The module tools/benchmark_<method>.py (``-`` -> ``_``)."""
    import importlib.util
    name = 'benchmark_' + method.replace('-', '_')
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO, 'tools', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--method', choices=METHODS, default='mae')
    method = pre.parse_known_args(argv)[0].method
    p = argparse.ArgumentParser(
        description='Time a training step of a masking method against '
        'plain MAE (--method mae: MaskedMAE vs mmpretrain MAE)')
    p.add_argument('--method', choices=METHODS, default='mae',
                   help='which method to time (default: mae)')
    p.add_argument(
        '--arch', default='demo',
        help="'demo', an mmpretrain ViT arch name ('tiny', 'small', 'b', "
        "...) or a JSON dict of embed_dims/num_layers/num_heads/"
        'feedforward_channels')
    p.add_argument('--img-size', type=int, default=None,
                   help='default: 32 for demo, 224 otherwise')
    p.add_argument('--patch-size', type=int, default=None,
                   help='default: 4 for demo, 16 otherwise')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--steps', type=int, default=10,
                   help='timed steps per variant (after the warm-up)')
    p.add_argument('--warmup', type=int, default=3,
                   help='untimed steps per variant before the timed ones')
    p.add_argument(
        '--rounds', type=int, default=1,
        help='repeat build + warm-up + timed steps of every variant, in '
        'alternating order; the median pools all rounds (robust to drift '
        'on a shared machine)')
    p.add_argument('--device', default='auto',
                   help="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'")
    p.add_argument('--dtype', choices=['fp32', 'bf16'], default='fp32',
                   help='bf16 = torch.autocast(bfloat16), weights stay fp32')
    p.add_argument('--compile', action='store_true',
                   help='also time per-block torch.compile of both models')
    p.add_argument('--compile-mode', default=None,
                   help='torch.compile mode (e.g. max-autotune) with '
                   '--compile')
    p.add_argument(
        '--masker', default='RandomMasker',
        help='registered masker type (built with mask_ratio=0.75) or a JSON '
        'masker config dict')
    p.add_argument('--decoder-dim', type=int, default=None)
    p.add_argument('--decoder-depth', type=int, default=None)
    p.add_argument('--decoder-heads', type=int, default=None)
    p.add_argument('--mask-reps', type=int, default=50,
                   help='repetitions of the masking-only timing')
    p.add_argument('--lr', type=float, default=1.5e-4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None,
                   help='torch.set_num_threads (CPU); default: unchanged')
    p.add_argument('--out', default=None, help='also write the JSON here')
    if method != 'mae':
        load_method(method).add_arguments(p)
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error('--steps must be >= 1')
    if args.warmup < 0:
        p.error('--warmup must be >= 0')
    if args.rounds < 1:
        p.error('--rounds must be >= 1')
    return args


# --------------------------------------------------------------------------
# model configs
# --------------------------------------------------------------------------
def _round_to(x: float, multiple: int) -> int:
    return max(multiple, int(round(x / multiple)) * multiple)


def proportionate_decoder(embed_dims: int) -> dict:
    """mmpretrain's 512-d/8-block/16-head decoder from 768-d encoders up;
    below, width 2/3 of the encoder's (head dim 32) and depth 8·D/768.

    ViT-tiny (192-d) gets 128-d, 4 heads, 2 blocks: the decoder of the
    package's demo config.
    """
    if embed_dims >= 768:
        return dict(MMPRETRAIN_DECODER)
    dim = _round_to(embed_dims * 2 / 3, 32)
    return dict(dim=dim, depth=max(1, round(8 * embed_dims / 768)),
                heads=max(1, dim // 32))


def resolve_arch(arch: str):
    """(arch value for the backbone, its settings dict)."""
    from mmpretrain.models.backbones import VisionTransformer
    if arch.lstrip().startswith('{'):
        settings = json.loads(arch)
        return settings, dict(settings)
    name = ARCH_ALIASES.get(arch, arch)
    if name not in VisionTransformer.arch_zoo:
        raise SystemExit(
            f'unknown --arch {arch!r}: use demo, tiny, a JSON dict or one of '
            f'{sorted(VisionTransformer.arch_zoo)}')
    return name, dict(VisionTransformer.arch_zoo[name])


def masker_cfg(masker: str) -> dict:
    if masker.lstrip().startswith('{'):
        return json.loads(masker)
    return dict(type=masker, mask_ratio=MASK_RATIO)


def build_cfgs(args: argparse.Namespace):
    """Configs of ours (MaskedMAE) and mmpretrain's (MAE) + a summary."""
    if args.arch == 'demo':
        from mmengine.config import Config
        ours = Config.fromfile(DEMO_MODEL).model.to_dict()
        img = args.img_size or ours['backbone']['img_size']
        patch = args.patch_size or ours['backbone']['patch_size']
        settings = dict(ours['backbone']['arch'])
        neck = ours['neck']
        dec = dict(dim=neck['decoder_embed_dim'], depth=neck['decoder_depth'],
                   heads=neck['decoder_num_heads'])
    else:
        img = args.img_size or 224
        patch = args.patch_size or 16
        arch, settings = resolve_arch(args.arch)
        dec = proportionate_decoder(settings['embed_dims'])
        ours = dict(
            type='MaskedMAE',
            backbone=dict(type='MaskableViT', arch=arch,
                          mask_ratio=MASK_RATIO),
            neck=dict(type='MAEPretrainDecoder', in_chans=3, mlp_ratio=4.),
            head=dict(
                type='MAEPretrainHead', norm_pix=True,
                loss=dict(type='PixelReconstructionLoss', criterion='L2')),
            init_cfg=[
                dict(type='Xavier', layer='Linear', distribution='uniform'),
                dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
            ])
    for key, value in (('dim', args.decoder_dim), ('depth',
                                                   args.decoder_depth),
                       ('heads', args.decoder_heads)):
        if value is not None:
            dec[key] = value
    if img % patch:
        raise SystemExit(f'--img-size {img} is not divisible by '
                         f'--patch-size {patch}')
    num_patches = (img // patch)**2
    ours['backbone'].update(img_size=img, patch_size=patch)
    ours['neck'].update(
        num_patches=num_patches, patch_size=patch,
        embed_dim=settings['embed_dims'], decoder_embed_dim=dec['dim'],
        decoder_depth=dec['depth'], decoder_num_heads=dec['heads'])
    ours['head'].update(patch_size=patch, norm_pix=True)
    ours['masker'] = masker_cfg(args.masker)

    theirs = {k: v for k, v in ours.items() if k not in ('masker', 'compile')}
    theirs = json.loads(json.dumps(theirs))  # deep copy
    theirs['type'] = 'MAE'
    theirs['backbone']['type'] = 'MAEViT'
    summary = dict(arch=args.arch, arch_settings=settings, decoder=dec,
                   img_size=img, patch_size=patch, num_patches=num_patches,
                   mask_ratio=ours['backbone'].get('mask_ratio', MASK_RATIO),
                   masker=ours['masker'])
    return ours, theirs, summary


def build(cfg: dict, compile_kwargs: Optional[dict] = None):
    from mlmask_mm.registry import MODELS
    cfg = json.loads(json.dumps(cfg))
    if compile_kwargs is not None and cfg['type'] == 'MaskedMAE':
        cfg['compile'] = compile_kwargs or True
    model = MODELS.build(cfg)
    if compile_kwargs is not None and cfg['type'] != 'MaskedMAE':
        compile_blocks(model, compile_kwargs)
    return model


def compile_blocks(model: torch.nn.Module, kwargs: dict) -> None:
    """The per-block compile of ``MaskedMAE._compile`` for mmpretrain's MAE."""
    for blocks in (model.backbone.layers,
                   getattr(model.neck, 'decoder_blocks', [])):
        for i, block in enumerate(blocks):
            blocks[i] = torch.compile(block, **kwargs)


def _plain(key: str) -> str:
    return key.replace('_orig_mod.', '')


def load_weights(model: torch.nn.Module, state: Dict[str, torch.Tensor]):
    """Load a plain (uncompiled) state dict into a maybe-compiled model."""
    keys = model.state_dict().keys()
    model.load_state_dict({k: state[_plain(k)] for k in keys}, strict=True)


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of one variant: CUDA allocator or CPU peak RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == 'cuda':
            self.kind = 'cuda max_memory_allocated'
        elif self._clear_refs():
            self.kind = 'cpu peak RSS (VmHWM, reset per variant)'
        else:  # cannot reset: process-wide, monotone over the variants
            self.kind = 'cpu peak RSS (ru_maxrss, process-wide)'

    @staticmethod
    def _clear_refs() -> bool:
        try:  # Linux >= 4.0: "5" resets VmHWM to the current RSS
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            return True
        except OSError:
            return False

    def reset(self) -> None:
        gc.collect()
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        elif 'VmHWM' in self.kind:
            self._clear_refs()

    def peak_mb(self) -> float:
        if self.device.type == 'cuda':
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if 'VmHWM' in self.kind:
            with open('/proc/self/status') as f:
                for line in f:
                    if line.startswith('VmHWM:'):
                        return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def autocast(device: torch.device, dtype: str):
    if dtype == 'bf16':
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_batch(args, summary, device):
    """Random images and data samples (with a random patch-grid `mask` for
    maskers that read one, e.g. RegionMasker); fixed by the seed."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(args.seed)
    img = summary['img_size']
    inputs = torch.randn(args.batch_size, 3, img, img, generator=g)
    side = img // summary['patch_size']
    samples = []
    for _ in range(args.batch_size):
        s = DataSample()
        s.set_field((torch.rand(side, side, generator=g) < 0.5).float(),
                    'mask', dtype=torch.Tensor)
        samples.append(s)
    return inputs.to(device), samples


def time_training(model, inputs, samples, args, device,
                  memory: PeakMemory) -> dict:
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95),
                            weight_decay=0.05)
    memory.reset()
    torch.manual_seed(args.seed + 1)  # the same masks for every variant
    times, first_loss, first_ms = [], None, None
    for i in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(device, args.dtype):
            loss = model.loss(inputs, samples)['loss']
        loss.backward()
        opt.step()
        sync(device)
        dt = time.perf_counter() - t0
        if i == 0:
            first_loss, first_ms = loss.detach().float().item(), dt * 1e3
        if i >= args.warmup:
            times.append(dt)
    return dict(times=times, first_step_ms=first_ms,
                first_step_loss=first_loss, peak_mem_mb=memory.peak_mb())


def summarise(rounds: List[dict], batch_size: int) -> dict:
    """Median over the timed steps of all rounds; the first round's first
    step (it includes a compile); the largest peak memory."""
    times = [t for r in rounds for t in r['times']]
    ms = statistics.median(times) * 1e3
    return dict(
        images_per_s=batch_size / (ms / 1e3),
        ms_per_step=ms,
        ms_per_step_min=min(times) * 1e3,
        ms_per_step_max=max(times) * 1e3,
        timed_steps=len(times),
        round_medians_ms=[statistics.median(r['times']) * 1e3
                          for r in rounds],
        first_step_ms=rounds[0]['first_step_ms'],
        first_step_loss=rounds[0]['first_step_loss'],
        peak_mem_mb=max(r['peak_mem_mb'] for r in rounds))


def _time_once(fn: Callable[[], object], device,
               out: List[float]) -> None:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    out.append((time.perf_counter() - t0) * 1e3)


def time_masking(ours, theirs, inputs, samples, args, device) -> dict:
    """Masking alone on the same tokens, interleaved repetitions."""
    ours.to(device).eval()
    theirs.to(device).eval()
    ratio = theirs.backbone.mask_ratio
    with torch.no_grad(), autocast(device, args.dtype):
        tokens = ours.backbone.embed(inputs)
        context = ours.mask_context(samples)
        D = tokens.shape[-1]

        def masker():
            return ours.masker(tokens, inputs, context)

        def masker_gather():
            r = ours.masker(tokens, inputs, context)
            return torch.gather(
                tokens, 1, r.ids_keep.unsqueeze(-1).expand(-1, -1, D))

        def mmpretrain():
            return theirs.backbone.random_masking(tokens, ratio)

        fns = dict(ours_masker_ms=masker,
                   ours_masker_plus_gather_ms=masker_gather,
                   mmpretrain_random_masking_ms=mmpretrain)
        for fn in fns.values():  # warm-up
            for _ in range(3):
                fn()
        times = {k: [] for k in fns}
        for _ in range(args.mask_reps):
            for k, fn in fns.items():
                _time_once(fn, device, times[k])
    res = {k: statistics.median(v) for k, v in times.items()}
    res['reps'] = args.mask_reps
    res['ratio_masker_plus_gather_vs_mmpretrain'] = (
        res['ours_masker_plus_gather_ms'] /
        res['mmpretrain_random_masking_ms'])
    return res


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ratio(results: dict, a: str, b: str) -> Optional[float]:
    if a in results and b in results:
        return results[a]['images_per_s'] / results[b]['images_per_s']
    return None


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    import mlmask_mm  # noqa: F401  (registers MaskedMAE, maskers)
    from mmengine.logging import MMLogger

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu')
                          if args.device == 'auto' else args.device)
    if args.dtype == 'bf16' and device.type == 'cuda' and \
            not torch.cuda.is_bf16_supported():
        raise SystemExit('bf16 is not supported on this GPU')
    if args.method != 'mae':
        # this module's helpers, also when loaded without a sys.modules entry
        bench = types.SimpleNamespace(**globals())
        return emit(load_method(args.method).run(args, bench), args.out)
    ours_cfg, theirs_cfg, summary = build_cfgs(args)
    compile_kwargs = dict(mode=args.compile_mode) if args.compile_mode \
        else {}

    # reference weights: ours, initialised as in training (init_cfg, the
    # sin-cos position embeddings), copied into every variant
    torch.manual_seed(args.seed)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter
    try:
        ref = build(ours_cfg)
        ref.init_weights()
    finally:
        logger.setLevel(level)
    state = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    params = sum(p.numel() for p in ref.parameters())
    inputs, samples = make_batch(args, summary, device)

    # the masking step alone, on the eager models
    theirs = build(theirs_cfg)
    load_weights(theirs, state)
    masking = time_masking(ref, theirs, inputs, samples, args, device)
    del ref, theirs

    variants = [('mmpretrain_eager', theirs_cfg, None),
                ('ours_eager', ours_cfg, None)]
    if args.compile:
        variants += [('mmpretrain_compiled', theirs_cfg, compile_kwargs),
                     ('ours_compiled', ours_cfg, compile_kwargs)]
    memory = PeakMemory(device)
    runs = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        # alternate the order so that drift (other load, clocks) cancels
        order = variants if r % 2 == 0 else [
            v for pair in zip(variants[1::2], variants[0::2]) for v in pair]
        for name, cfg, ckw in order:
            if ckw is not None and r == 0:
                # fresh dynamo caches per compiled variant (inductor's
                # FX-graph cache may still serve identical graphs, so the
                # second one's first step can be much shorter)
                torch._dynamo.reset()
            model = build(cfg, ckw)
            load_weights(model, state)
            runs[name].append(
                time_training(model, inputs, samples, args, device, memory))
            del model
            gc.collect()
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    results = {name: summarise(runs[name], args.batch_size)
               for name, _, _ in variants}

    ratios = dict(eager=_ratio(results, 'ours_eager', 'mmpretrain_eager'))
    if args.compile:
        ratios.update(
            compiled=_ratio(results, 'ours_compiled', 'mmpretrain_compiled'),
            ours_compiled_vs_mmpretrain_eager=_ratio(
                results, 'ours_compiled', 'mmpretrain_eager'))
    checks = dict(first_step_loss_abs_diff_eager=abs(
        results['ours_eager']['first_step_loss'] -
        results['mmpretrain_eager']['first_step_loss']))
    if args.compile:
        checks['first_step_loss_abs_diff_compiled'] = abs(
            results['ours_compiled']['first_step_loss'] -
            results['mmpretrain_compiled']['first_step_loss'])

    out = dict(
        config=dict(
            summary, batch_size=args.batch_size, steps=args.steps,
            warmup=args.warmup, rounds=args.rounds, dtype=args.dtype,
            compile=args.compile,
            compile_mode=args.compile_mode, seed=args.seed,
            params_m=params / 1e6),
        environment=dict(
            device=str(device), device_name=device_name(device),
            torch=torch.__version__,
            cuda=torch.version.cuda if device.type == 'cuda' else None,
            threads=torch.get_num_threads(), python=platform.python_version(),
            date=datetime.date.today().isoformat()),
        memory_kind=memory.kind,
        variants=results,
        ratios_images_per_s_ours_over_mmpretrain=ratios,
        checks=checks,
        masking=masking)
    return emit(out, args.out)


def emit(out: dict, path: Optional[str]) -> dict:
    """Print ``out`` as JSON and also write it to ``path`` if given."""
    text = json.dumps(out, indent=2)
    print(text)
    if path:
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text + '\n')
    return out


if __name__ == '__main__':
    main()
