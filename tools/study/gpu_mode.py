"""GPU mode of the CIFAR-10 study (docs/study.md, "GPU mode").

The CPU study's four strategies (plain MAE, MLO-MAE continued from the
MAE run at 90 % of the budget, Self-Guided MAE, CL-MAE) and the randomly
initialised encoder, with the same probes, on one GPU at a longer
schedule: batch 256 (learning rates scaled linearly from the configs'
batch 64, mmengine's ``auto_scale_lr``), every run in one process
(``study.py --in-process``: no interpreter start per step), cost ratios
measured on the GPU itself (``tools/analysis_tools/benchmark.py`` at the
study's batch) unless a cost file is given.  ``study_gpu.json`` records
the device, torch version and wall time of the whole study.

The study itself is :mod:`study.study`; this module only chooses its
arguments, prepares the probe part and measures the costs.  Configs and
tools come from the study's root (``--root DIR``, else the current working
directory).
"""
import argparse
import datetime
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence

from .running import study_root

#: label -> config, the CPU study's (docs/study.md) in its run order
CONFIGS = (
    ('mae', 'mae/mae_vit-tiny-p4_demo.py'),
    ('mlo-mae', 'mlo_mae/mlo-mae_vit-tiny-p4_1xb64-continued_cifar10.py'),
    ('sg-mae', 'sg_mae/sg-mae_vit-tiny-p4_demo.py'),
    ('cl-mae', 'cl_mae/cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py'),
)
#: the batch size the configs' learning rates are set for
CONFIG_BATCH = 64
PROBE_CONFIG = 'benchmarks/vit-tiny-p4_1xb256-linear-adamw-3e_cifar10.py'
#: MLO-MAE starts from the MAE run after this share of the budget
CONTINUE_AT = 0.9


def make_probe_split(root: str, train: str = 'train', probe: str = 'probe',
                     per_class: int = 500) -> int:
    """``root/probe/<class>/``: symbolic links to the first ``per_class``
    files (sorted by name) of each class of ``root/train/``, as the CPU
    study's probe part.  An existing probe part is left as it is.
    Returns the number of images in the probe part."""
    src, dst = osp.join(root, train), osp.join(root, probe)
    if not osp.isdir(src):
        raise FileNotFoundError(f'study_gpu: no train part {src}')
    if not osp.isdir(dst):
        classes = sorted(c for c in os.listdir(src)
                         if osp.isdir(osp.join(src, c)))
        if not classes:
            raise FileNotFoundError(f'study_gpu: {src} has no class folders')
        tmp = dst + '.tmp'
        for c in classes:
            files = sorted(os.listdir(osp.join(src, c)))
            if len(files) < per_class:
                raise ValueError(
                    f'study_gpu: class {c!r} of {src} has {len(files)} '
                    f'images, fewer than the {per_class} of the probe part')
            os.makedirs(osp.join(tmp, c), exist_ok=True)
            for f in files[:per_class]:
                link = osp.join(tmp, c, f)
                if not osp.lexists(link):
                    os.symlink(osp.realpath(osp.join(src, c, f)), link)
        os.rename(tmp, dst)
    return sum(len(os.listdir(osp.join(dst, c))) for c in os.listdir(dst))


def measure_costs(configs: Sequence[str], batch_size: int, out: str,
                  device: str = 'cuda', iters: int = 10,
                  warmup: int = 3) -> Dict[str, float]:
    """One training step of each config at ``batch_size`` timed against
    plain MAE's (the first), interleaved in this process; the benchmark
    CLI's JSON is written to ``out`` (``study.py --cost-file`` reads it)."""
    from benchmark import benchmark_configs, write_json
    result = benchmark_configs(configs, batch_size=batch_size, iters=iters,
                               warmup=warmup, device=device)
    write_json(result, out)
    print('\n'.join(result['table']))
    return result['ratios_vs_first']


def config_path(name: str, root: Optional[str] = None) -> str:
    """A config below ``ROOT/configs/``."""
    return osp.join(study_root(root), 'configs', name)


def study_argv(data: str, out_dir: str, cost_file: str, iters: int,
               batch_size: int, seeds: Sequence[int], workers: int,
               device: str, mask_content: int,
               extra: Sequence[str] = (),
               root: Optional[str] = None) -> List[str]:
    """The ``tools/misc/study.py`` arguments of the GPU mode."""
    root = study_root(root)
    if iters % 10:
        raise ValueError(f'study_gpu: --iters must be a multiple of 10 (MLO '
                         f'continues from the MAE checkpoint at '
                         f'{CONTINUE_AT:.0%} of it), got {iters}')
    options = [f'train_dataloader.batch_size={batch_size}']
    if batch_size != CONFIG_BATCH:
        options += [f'auto_scale_lr.base_batch_size={CONFIG_BATCH}',
                    'auto_scale_lr.enable=True']
    argv = [config_path(c, root) for _, c in CONFIGS]
    argv += ['--labels', *(label for label, _ in CONFIGS),
             '--data', data, '--train-split', 'train',
             '--probe-split', 'probe', '--val-split', 'test',
             '--iters', str(iters), '--cost-file', cost_file,
             '--cfg-options', *options,
             '--continue', f'mlo-mae=mae@{int(iters * CONTINUE_AT)}',
             '--random-init', '--probes', 'linear', 'fewshot',
             '--probe-config', config_path(PROBE_CONFIG, root),
             '--probe-epochs', '3',
             '--shots', '1', '4', '16', '64', '256', '500',
             '--fewshot-seeds', '3', '--fewshot-feature', 'mean_patch',
             '--num-workers', str(workers), '--device', device,
             '--seeds', *map(str, seeds), '--out-dir', out_dir,
             '--in-process', '--root', root]
    if mask_content:
        argv += ['--mask-content', str(mask_content)]
    return argv + list(extra)


def parse_args(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(
        description='GPU mode of the CIFAR-10 study (docs/study.md): MAE, '
        'MLO-MAE (continued), Self-Guided MAE, CL-MAE and random init, '
        'linear and few-shot probes, on one GPU',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('data', help='ROOT with train/ and test/ class folders '
                   '(tools/dataset_converters/cifar10_fewshot_tree.py); '
                   'probe/ is made from train/ when missing')
    p.add_argument('--root', metavar='DIR',
                   help='the checkout whose configs and tools the study '
                   'runs (default: the current working directory)')
    p.add_argument('--out-dir', default='work_dirs/study_gpu')
    p.add_argument('--iters', type=int, default=4000,
                   help='plain-MAE steps per run (divided by each method\'s '
                   'cost ratio)')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--num-workers', type=int, default=8)
    p.add_argument('--device', default='cuda')
    p.add_argument('--mask-content', type=int, default=256,
                   metavar='IMAGES', help='0: no mask-content test')
    p.add_argument('--cost-file', help='cost ratios measured earlier '
                   '(default: measured now, OUT/costs_benchmark.json)')
    p.add_argument('--dry-run', action='store_true',
                   help='write commands.sh only (needs --cost-file; no GPU '
                   'needed)')
    p.epilog = ('Arguments after -- go to tools/misc/study.py as they are '
                '(e.g. -- --reuse earlier/study.json).')
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index('--') if '--' in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.study_args = argv[cut + 1:]
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    import torch

    from . import cli
    args = parse_args(argv)
    root = study_root(args.root)
    if args.dry_run and not args.cost_file:
        raise ValueError('study_gpu: --dry-run needs --cost-file (the cost '
                         'ratios are measured on the GPU otherwise)')
    if not args.dry_run and args.device.startswith('cuda') and \
            not torch.cuda.is_available():
        raise RuntimeError(
            f'study_gpu: --device {args.device} but torch.cuda.is_available()'
            ' is False; the CPU study is tools/misc/study.py (docs/study.md)')
    start = time.time()
    os.makedirs(args.out_dir, exist_ok=True)
    probe_images = make_probe_split(args.data)
    cost_file = args.cost_file
    if cost_file is None:
        cost_file = osp.join(args.out_dir, 'costs_benchmark.json')
        measure_costs([config_path(c, root) for _, c in CONFIGS],
                      args.batch_size, cost_file, device=args.device)
    cost_seconds = time.time() - start
    study_args = study_argv(
        args.data, args.out_dir, cost_file, args.iters, args.batch_size,
        args.seeds, args.num_workers, args.device, args.mask_content,
        [*args.study_args, *(['--dry-run'] if args.dry_run else [])], root)
    result = cli.main(study_args)
    cuda = args.device.startswith('cuda') and torch.cuda.is_available()
    record = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        device=torch.cuda.get_device_name(args.device) if cuda else 'cpu',
        torch=torch.__version__, dry_run=args.dry_run,
        wall_seconds=round(time.time() - start, 1),
        cost_seconds=round(cost_seconds, 1), probe_images=probe_images,
        cost_file=cost_file, study_args=study_args)
    with open(osp.join(args.out_dir, 'study_gpu.json'), 'w') as f:
        json.dump(record, f, indent=1)
    print(f'[study_gpu] {record["device"]}: whole study in '
          f'{record["wall_seconds"]:.0f} s (goal: 480 s on one H200)')
    return dict(result or {}, gpu_mode=record)
