"""GPU acceptance run: every method's ViT-B/16 config, the benchmark CLI and
the transfer configs on generated data, one JSON report.

    bash tools/misc/gpu_acceptance.sh [--out DIR] [--budget SECONDS] [...]

Steps (each one timed, each one ``ok``, ``failed`` or ``skipped`` with the
reason, in ``DIR/report.json``; format in docs/benchmarks.md):

1. ``environment``: torch, CUDA, GPUs; refuses a stack that cannot work
   (``transformers`` beside ``pycocotools`` breaks mmpretrain 1.2.0's import).
2. ``mmcv_ops``: ``tools/install_mmcv.sh`` when ``mmcv.ops`` is missing
   (CUDA ops on a GPU machine; the wheel is cached, see that script).
3. ``data``: an ImageNet-like class-folder tree (train and val), an
   ADE20K-like and a COCO-like tree, under ``DIR/run/data/`` where the
   shipped configs look for them (``data/imagenet``, ``data/ade/...``,
   ``data/coco``); every tool runs with ``DIR/run`` as working directory.
4. ``train_<method>``: a few iterations of each method's ViT-B/16 config at
   224 px in bf16 through ``tools/train.py`` (``--tiny`` on a machine
   without a GPU: the methods' ViT-tiny demo configs, fp32).
5. ``dist_train_<method>``: ``tools/dist_train.sh CONFIG 2`` (2+ GPUs only).
6. ``benchmark_fast_path`` (mmpretrain's MAE, ours eager, ours fast path
   eager and compiled: batch 256, bf16, interleaved) and
   ``benchmark_methods`` (each method against plain MAE on the eager
   modules) through ``tools/analysis_tools/benchmark.py``.
7. ``convert``, ``convert_vitdet``: ``tools/model_converters/mlmask2backbone.py``
   on the MAE run (``--target mmseg-mae`` / ``vitdet``).
8. ``transfer_upernet`` / ``transfer_mask_rcnn``: a few iterations of the
   ADE20K UPerNet and COCO Mask R-CNN configs from the converted checkpoint,
   with mmseg's / mmdet's own ``tools/train.py`` (GPU only).

Exit status 0 when no step failed.
"""
import argparse
import importlib.util
import json
import math
import os
import os.path as osp
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

#: method -> ViT-B/16 config, its bf16 switch, its ViT-tiny demo config
METHODS = {
    'mae': dict(
        vitb='configs/mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
        bf16=['optim_wrapper.dtype=bfloat16'],
        demo='configs/mae/mae_vit-tiny-p4_demo.py'),
    'sg_mae': dict(
        vitb='configs/sg_mae/sg-mae_vit-base-p16_8xb512-amp-coslr-400e_'
        'in1k.py',
        bf16=['optim_wrapper.dtype=bfloat16'],
        demo='configs/sg_mae/sg-mae_vit-tiny-p4_demo.py'),
    'cl_mae': dict(
        vitb='configs/cl_mae/cl-mae_vit-base-p16_8xb256-amp-coslr-200e_'
        'in1k.py',
        bf16=['optim_wrapper.mae.dtype=bfloat16',
              'optim_wrapper.masker.dtype=bfloat16'],
        demo='configs/cl_mae/cl-mae_vit-tiny-p4_demo.py'),
    'mlo_mae': dict(
        vitb='configs/mlo_mae/vitb_in1k.py',
        bf16=[],  # model.amp='bf16' in the config (finite differences fp32)
        demo='configs/mlo_mae/mlo-mae_vit-tiny-p4_demo.py'),
}
MMPRETRAIN_MAE = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'
UPERNET = 'configs/transfer/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'
MASK_RCNN = 'configs/transfer/vitdet_mask-rcnn_vit-b_16xb4-amp-lsj-100e_coco.py'
BENCHMARK = 'tools/analysis_tools/benchmark.py'
#: ``--cfg-options`` that put the MAE ViT-B/16 config on mmpretrain's
#: eager modules and optimizer step (the fast path's reference; the config
#: ships them)
EAGER_MODULES = ['model.backbone.type=MaskableViT',
                 'model.neck.type=MAEPretrainDecoder',
                 'optim_wrapper.type=AmpOptimWrapper',
                 'optim_wrapper.optimizer.fused=False']
#: ``--cfg-options`` of the fast path (docs/get_started.md, "Precision and
#: speed"): fused blocks compiled whole on a GPU, bf16 without a loss
#: scaler, fused AdamW; an option of the MAE / Self-Guided ViT-B/16 configs
FAST_PATH = ['model.backbone.type=FastMAEViT',
             'model.neck.type=FastMAEPretrainDecoder',
             'optim_wrapper.type=BF16AmpOptimWrapper',
             'optim_wrapper.dtype=bfloat16',
             'optim_wrapper.optimizer.fused=True']


def fast_path_benchmark_args(batch_size: int, iters: int,
                             out: str) -> List[str]:
    """Arguments of ``tools/analysis_tools/benchmark.py`` for the
    ``ours, fast path`` row (docs/benchmarks.md): mmpretrain's MAE, ours on
    the eager modules (the config as shipped), ours with the fast-path
    options eager, and compiled (the fast path on a GPU), ViT-B/16, 224 px,
    bf16, interleaved."""
    ours = osp.join(ROOT, METHODS['mae']['vitb'])
    return [MMPRETRAIN_MAE, ours, ours, ours,
            '--cfg-options-of', '2'] + EAGER_MODULES + [
            '--cfg-options-of', '3'] + FAST_PATH + [
            'model.backbone.compile=False', 'model.neck.compile=False',
            '--cfg-options-of', '4'] + FAST_PATH + [
            'model.backbone.compile=True', 'model.neck.compile=True',
            '--batch-size', str(batch_size), '--iters', str(iters),
            '--warmup', '5', '--amp', 'bf16', '--out', out]
CONVERTER = 'tools/model_converters/mlmask2backbone.py'


class Report:
    """Steps in order, written to ``path`` after each one."""

    def __init__(self, path: str, budget: float, meta: dict) -> None:
        self.path, self.budget, self.start = path, budget, time.time()
        self.data = dict(meta, steps=[])
        self.write()

    def left(self) -> float:
        return self.budget - (time.time() - self.start)

    def add(self, name: str, status: str, seconds: float = 0.0,
            reason: Optional[str] = None, **details) -> dict:
        step = dict(name=name, status=status, seconds=round(seconds, 1))
        if reason:
            step['reason'] = reason
        step.update(details)
        self.data['steps'].append(step)
        self.write()
        line = f'[acceptance] {name}: {status} ({seconds:.0f} s)'
        print(line + (f' - {reason}' if reason else ''), flush=True)
        return step

    def write(self) -> None:
        self.data['elapsed_s'] = round(time.time() - self.start, 1)
        self.data['summary'] = {
            s: sum(st['status'] == s for st in self.data['steps'])
            for s in ('ok', 'failed', 'skipped')
        }
        with open(self.path, 'w') as f:
            json.dump(self.data, f, indent=1)


def run_command(cmd: List[str], cwd: str, log: str, timeout: float,
                env: Dict[str, str]) -> (int, str):
    """Run ``cmd``; its output goes to ``log``; (exit status, last lines)."""
    with open(log, 'w') as f:
        f.write(' '.join(cmd) + '\n')
        f.flush()
        try:
            rc = subprocess.run(cmd, cwd=cwd, stdout=f,
                                stderr=subprocess.STDOUT, env=env,
                                timeout=max(timeout, 1)).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    with open(log) as f:
        tail = f.readlines()[-15:]
    return rc, ''.join(tail)


def last_scalars(work_dir: str) -> dict:
    """The last logged training scalars (mmengine's vis_data/scalars.json)."""
    found = []
    for dirpath, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            found.append(osp.join(dirpath, 'scalars.json'))
    if not found:
        return {}
    last = {}
    with open(sorted(found)[-1]) as f:
        for line in f:
            row = json.loads(line)
            if 'loss' in row or any(k.startswith('loss') for k in row):
                last = row
    return last


def find_checkpoint(work_dir: str) -> Optional[str]:
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.exists(pointer):
        with open(pointer) as f:
            path = f.read().strip()
        if osp.exists(path):
            return path
    return None


def library_tool(package: str, tool: str) -> Optional[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = osp.join(spec.submodule_search_locations[0], '.mim', 'tools', tool)
    return path if osp.exists(path) else None


def environment(gpus: int) -> dict:
    import torch
    info = dict(python=platform.python_version(), torch=torch.__version__,
                cuda=torch.version.cuda, gpus=[
                    torch.cuda.get_device_name(i) for i in range(gpus)
                ])
    for name in ('mmengine', 'mmpretrain', 'mmcv', 'mmseg', 'mmdet'):
        try:
            info[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001  (recorded, not hidden)
            info[name] = f'not importable: {type(e).__name__}: {e}'
    return info


def stack_problem() -> Optional[str]:
    """Why mmpretrain 1.2.0 cannot be imported here, if it cannot."""
    has = {n: importlib.util.find_spec(n) is not None
           for n in ('transformers', 'pycocotools')}
    if all(has.values()):
        return ('transformers and pycocotools are both installed: mmpretrain '
                "1.2.0 then imports its BLIP code, which fails; uninstall "
                "transformers (this package's extras never install it)")
    return None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='work_dirs/gpu_acceptance',
                        help='report, logs, data and runs go here')
    parser.add_argument('--budget', type=float, default=600,
                        help='seconds; steps that would start later are '
                        'skipped (default 600)')
    parser.add_argument('--methods', nargs='+', default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument('--iters', type=int, default=4,
                        help='training iterations per method')
    parser.add_argument('--batch-size', type=int, default=32,
                        help='per-GPU batch of the training steps')
    parser.add_argument('--bench-batch-size', type=int, default=256)
    parser.add_argument('--bench-iters', type=int, default=10)
    parser.add_argument('--skip', nargs='*', default=[],
                        help='step names (or prefixes) not to run')
    parser.add_argument('--fast-path-only', action='store_true',
                        help='run only the benchmark of the fast path '
                        "(the 'ours, fast path' row of docs/benchmarks.md) "
                        'with --bench-batch-size / --bench-iters, output '
                        'on the terminal and in OUT/benchmark_fast_path.json')
    parser.add_argument('--tiny', action='store_true',
                        help='ViT-tiny demo configs in fp32 (default '
                        'without a GPU)')
    return parser.parse_args(argv)


def main(argv=None) -> int:  # noqa: C901  (one step after another)
    args = parse_args(argv)
    if args.fast_path_only:
        os.makedirs(args.out, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(
                os.pathsep) if p]))
        cmd = [sys.executable, osp.join(ROOT, BENCHMARK)] + \
            fast_path_benchmark_args(
                args.bench_batch_size, args.bench_iters,
                osp.join(osp.abspath(args.out), 'benchmark_fast_path.json'))
        print('[acceptance] ' + ' '.join(cmd), flush=True)
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode
    import torch
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    tiny = args.tiny or gpus == 0
    out = osp.abspath(args.out)
    run_dir = osp.join(out, 'run')
    logs = osp.join(out, 'logs')
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    report = Report(
        osp.join(out, 'report.json'), args.budget,
        dict(date=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
             host=platform.node(), mode='tiny (ViT-tiny demo configs, fp32)'
             if tiny else 'ViT-B/16, 224 px, bf16', iters=args.iters,
             batch_size=args.batch_size))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    env.setdefault('PYTHONUNBUFFERED', '1')
    py = sys.executable

    def skipped(name):
        return any(name.startswith(s) for s in args.skip)

    def command_step(name, cmd, timeout, work_dir=None, **details):
        if skipped(name):
            return report.add(name, 'skipped', reason='--skip')
        if report.left() < 20:
            return report.add(name, 'skipped', reason='time budget spent')
        t = time.time()
        rc, tail = run_command(cmd, run_dir, osp.join(logs, name + '.log'),
                               min(timeout, report.left()), env)
        if rc != 0:
            why = 'timed out' if rc == 124 else f'exit status {rc}'
            return report.add(name, 'failed', time.time() - t,
                              reason=f'{why}; log: logs/{name}.log',
                              tail=tail[-3000:], **details)
        if work_dir is not None:
            scalars = last_scalars(work_dir)
            losses = {k: v for k, v in scalars.items() if 'loss' in k}
            bad = [k for k, v in losses.items()
                   if isinstance(v, float) and not math.isfinite(v)]
            if bad or not losses:
                return report.add(
                    name, 'failed', time.time() - t,
                    reason=f'non-finite losses {bad}' if bad else
                    'no loss logged', last_log=scalars, **details)
            details['last_log'] = scalars
            details['checkpoint'] = find_checkpoint(work_dir)
        return report.add(name, 'ok', time.time() - t, **details)

    # 1. environment ------------------------------------------------------
    t = time.time()
    info = environment(gpus)
    problem = stack_problem()
    report.add('environment', 'failed' if problem else 'ok',
               time.time() - t, reason=problem, **info)
    if problem:
        return 1

    # 2. mmcv with ops -----------------------------------------------------
    t = time.time()
    if importlib.util.find_spec('mmcv') and _has_mmcv_ops():
        report.add('mmcv_ops', 'ok', time.time() - t,
                   reason='mmcv.ops already importable')
    elif gpus == 0:
        report.add('mmcv_ops', 'skipped', reason='no GPU: transfer steps '
                   'are skipped, pretraining needs no mmcv ops')
    else:
        command_step('mmcv_ops', ['bash', osp.join(ROOT, 'tools',
                                                   'install_mmcv.sh'), py],
                     timeout=1500)

    # 3. data -------------------------------------------------------------
    t = time.time()
    from mlmask_mm.datasets.synthetic import (make_ade_like, make_coco_like,
                                              make_image_folder)
    size = 32 if tiny else 256
    n = max(args.batch_size * args.iters // 8, 2)
    classes = [f'n{i:08d}' for i in range(8)]
    data = osp.join(run_dir, 'data')
    for split, per_class, seed in (('train', n, 0), ('val', 2, 1)):
        make_imagenet_like(osp.join(data, 'imagenet'), split, classes,
                           per_class, size, seed)
    # the demo configs read data/cifar10_demo
    make_image_folder(osp.join(data, 'cifar10_demo'), classes[:2], max(
        args.batch_size * args.iters // 2, 4), 32, seed=2)
    if not tiny:
        make_ade_like(osp.join(data, 'ade', 'ADEChallengeData2016'),
                      size=512)
        make_coco_like(osp.join(data, 'coco'), size=640,
                       names=('person', 'bicycle'))
    report.add('data', 'ok', time.time() - t, train_images=n * len(classes),
               image_size=size)

    # 4. a few iterations of each method ----------------------------------
    work = osp.join(out, 'work_dirs')
    trained = {}
    for method in args.methods:
        spec = METHODS[method]
        config = osp.join(ROOT, spec['demo' if tiny else 'vitb'])
        wd = osp.join(work, method)
        opts = [f'train_dataloader.batch_size={args.batch_size}',
                'train_dataloader.num_workers=2',
                'default_hooks.logger.interval=1',
                'randomness.seed=0']
        if tiny:
            opts += [f'train_cfg.max_iters={args.iters}']
        else:
            opts += ['train_cfg.max_epochs=1'] + spec['bf16']
            if method == 'mlo_mae':
                opts += [f'train_cfg.{k}.batch_size={args.batch_size}'
                         for k in ('train_split_dataloader',
                                   'val_split_dataloader')]
        cmd = [py, osp.join(ROOT, 'tools', 'train.py'), config,
               '--work-dir', wd, '--cfg-options'] + opts
        step = command_step(f'train_{method}', cmd, 300, work_dir=wd,
                            config=spec['demo' if tiny else 'vitb'])
        if step['status'] == 'ok':
            trained[method] = step.get('checkpoint')

    # 5. two processes ----------------------------------------------------
    if gpus < 2:
        report.add('dist_train', 'skipped',
                   reason=f'{gpus} GPU(s): dist_train.sh with 2 processes '
                   'needs 2 GPUs (its CPU/gloo path is in the test suite)')
    else:
        for method in args.methods:
            spec = METHODS[method]
            wd = osp.join(work, 'dist_' + method)
            cmd = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'),
                   osp.join(ROOT, spec['vitb']), '2', '--work-dir', wd,
                   '--cfg-options', 'train_cfg.max_epochs=1',
                   f'train_dataloader.batch_size={args.batch_size // 2}',
                   'default_hooks.logger.interval=1'] + spec['bf16']
            command_step(f'dist_train_{method}', cmd, 300, work_dir=wd)

    # 6. benchmarks -------------------------------------------------------
    bench = osp.join(ROOT, BENCHMARK)
    if skipped('benchmark'):
        report.add('benchmark', 'skipped', reason='--skip')
    elif not osp.exists(bench):
        report.add('benchmark', 'failed', reason=f'{BENCHMARK} is missing')
    elif tiny:
        configs = [osp.join(ROOT, METHODS[m]['demo']) for m in args.methods]
        command_step('benchmark_methods',
                     [py, bench] + configs + [
                         '--batch-size', '4', '--iters', '1', '--warmup',
                         '1', '--out', osp.join(out, 'benchmark_methods.json')
                     ], 300, results='benchmark_methods.json')
    else:
        name = 'benchmark_fast_path'
        command_step(name, [py, bench] + fast_path_benchmark_args(
            args.bench_batch_size, args.bench_iters,
            osp.join(out, name + '.json')), 540, results=name + '.json')
        configs = [osp.join(ROOT, METHODS[m]['vitb']) for m in args.methods]
        # the methods against MAE on the eager modules (as they run)
        eager = [] if 'mae' not in args.methods else [
            '--cfg-options-of', str(args.methods.index('mae') + 1)
        ] + EAGER_MODULES
        command_step('benchmark_methods', [
            py, bench, *configs, '--batch-size', str(args.batch_size * 2),
            '--iters', str(args.bench_iters), '--amp', 'bf16', '--out',
            osp.join(out, 'benchmark_methods.json')
        ] + eager, 420, results='benchmark_methods.json')

    # 7-8. convert, transfer ----------------------------------------------
    # one converted file per transfer target (mmseg MAE, ViTDet)
    backbones = {t: osp.join(out, f'backbone_{t}.pth')
                 for t in ('mmseg-mae', 'vitdet')}
    if not trained.get('mae'):
        report.add('convert', 'skipped', reason='no MAE checkpoint')
    else:
        command_step('convert', [py, osp.join(ROOT, CONVERTER),
                                 trained['mae'], backbones['mmseg-mae'],
                                 '--target', 'mmseg-mae'], 120)
        command_step('convert_vitdet', [py, osp.join(ROOT, CONVERTER),
                                        trained['mae'], backbones['vitdet'],
                                        '--target', 'vitdet'], 120)
    iters = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2']
    for name, package, config, key, backbone, opts in (
            ('transfer_upernet', 'mmseg', UPERNET, 'model.pretrained',
             backbones['mmseg-mae'], iters),
            ('transfer_mask_rcnn', 'mmdet', MASK_RCNN,
             'model.backbone.init_cfg.checkpoint', backbones['vitdet'],
             iters + ['train_cfg.dynamic_intervals=None'])):
        tool = library_tool(package, 'train.py')
        if tiny:
            report.add(name, 'skipped', reason='no GPU (or --tiny): the '
                       'ViT-B/16 transfer configs run at 512-1024 px; the '
                       'test suite trains tiny versions on the CPU')
        elif tool is None:
            report.add(name, 'failed', reason=f'{package} is not installed')
        elif not osp.exists(backbone):
            report.add(name, 'skipped', reason='no converted checkpoint')
        else:
            wd = osp.join(work, name)
            command_step(name, [
                py, tool, osp.join(ROOT, config), '--work-dir', wd,
                '--cfg-options', f'{key}={backbone}',
                'default_hooks.logger.interval=1'
            ] + opts, 300, work_dir=wd)
    report.write()
    failed = [s['name'] for s in report.data['steps']
              if s['status'] == 'failed']
    print(f'[acceptance] report: {report.path}; summary '
          f"{report.data['summary']}" + (f'; failed: {failed}'
                                        if failed else ''))
    return 1 if failed else 0


def make_imagenet_like(root: str, split: str, classes: List[str],
                       per_class: int, size: int, seed: int) -> None:
    """``root/<split>/<class>/*.jpg`` and ``root/meta/<split>.txt``
    (mmpretrain's ``ImageNet(split=...)`` reads the list, so a tree with
    fewer than its 1000 classes loads)."""
    from mlmask_mm.datasets.synthetic import make_image_folder
    make_image_folder(osp.join(root, split), classes, per_class, size, seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
        for label, c in enumerate(classes):
            for i in range(per_class):
                f.write(f'{c}/{i:04d}.jpg {label}\n')


def _has_mmcv_ops() -> bool:
    try:
        import mmcv.ops  # noqa: F401
        return True
    except Exception:  # noqa: BLE001  (any failure means: build it)
        return False


if __name__ == '__main__':
    sys.exit(main())
