"""Time one training step of each config against the first, interleaved.

    python tools/analysis_tools/benchmark.py CONFIG [CONFIG ...]
        [--cfg-options k=v ...] [--cfg-options-of I k=v ...]
        [--batch-size N] [--iters N] [--warmup N] [--amp {fp32,bf16}]
        [--compile] [--device cuda|cpu] [--out JSON]

Each config's model and optimizer wrapper are built as the Runner builds them
and its training step (``train_step``, or MLO-MAE's ``outer_step``) runs on
synthetic images of the config's crop size; the configs take turns, in one
process.  A config may be one of mmpretrain's
(``mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py``).
Prints a table of ms/step, images/s, peak memory and the ratio to the first
config, then the JSON (also written to ``--out``).  The timing core is
tools/benchmark/; see docs/benchmarks.md.
"""
import argparse
import os.path as osp
import sys

import torch

TOOLS_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPO = osp.dirname(TOOLS_DIR)
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)
if sys.path[:1] != [TOOLS_DIR]:  # the harness package tools/benchmark,
    # ahead of tools/analysis_tools (which holds this benchmark.py)
    sys.path.insert(0, TOOLS_DIR)

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Time one training step of each config against the '
        'first (interleaved, one process)')
    p.add_argument('configs', nargs='+', metavar='CONFIG',
                   help='config files; the first is the reference')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   default={}, help='key=value merged into every config')
    p.add_argument('--cfg-options-of', nargs='+', action='append',
                   default=[], metavar=('I', 'KEY=VALUE'),
                   help='key=value merged into the I-th config only '
                   '(1-based; repeatable), e.g. to time one config twice: '
                   '--cfg-options-of 2 model.hypergrad.mode=finite_difference')
    p.add_argument('--batch-size', type=int, default=None,
                   help="images per step (MLO-MAE: per level-1 step); "
                   "default: each config's train_dataloader.batch_size")
    p.add_argument('--iters', type=int, default=10,
                   help='timed steps per config (whole cycles of the '
                   'masker-update interval)')
    p.add_argument('--warmup', type=int, default=3,
                   help='untimed steps per config before the timed ones '
                   '(>= 1; peak memory is measured on them)')
    p.add_argument('--amp', choices=['fp32', 'bf16'], default='fp32',
                   help="bf16: model.amp='bf16' where the model has it "
                   '(MLO-MAE), else AmpOptimWrapper(dtype=bfloat16) (GPU)')
    p.add_argument('--compile', action='store_true',
                   help='per-block torch.compile (model.compile=True)')
    p.add_argument('--device', default='auto',
                   help="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None,
                   help='torch.set_num_threads (CPU); default: unchanged')
    p.add_argument('--phases', nargs='+', default=[], metavar='METHOD',
                   help='also time these model methods inside the step, '
                   'e.g. mae_step masker_step (CL-MAE) or level1_step '
                   'level2_step level3_step (MLO-MAE)')
    p.add_argument('--flops', action='store_true',
                   help='also count the FLOPs of one step (after timing; '
                   'torch.utils.flop_counter, independent of the load)')
    p.add_argument('--flops-only', action='store_true',
                   help='count the FLOPs of one step, time nothing')
    p.add_argument('--no-shared-init', action='store_true',
                   help="do not start every model from the first one's "
                   'initial weights (where names and shapes match)')
    p.add_argument('--out', default=None, help='also write the JSON here')
    args = p.parse_args(argv)
    args.options_of = {}
    for item in args.cfg_options_of:
        try:
            index = int(item[0]) - 1
        except ValueError:
            p.error(f'--cfg-options-of: the first value is the config\'s '
                    f'position (1, 2, ...), got {item[0]!r}')
        if not 0 <= index < len(args.configs):
            p.error(f'--cfg-options-of: position {item[0]} is not among '
                    f'the {len(args.configs)} configs')
        ns = argparse.Namespace(options=None)
        DictAction(option_strings=[], dest='options')(p, ns, item[1:])
        args.options_of.setdefault(index, {}).update(ns.options or {})
    if args.iters < 1:
        p.error(f'--iters must be >= 1, got {args.iters}')
    if args.warmup < 1:
        p.error(f'--warmup must be >= 1, got {args.warmup}')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from benchmark import benchmark_configs, write_json
    if args.threads:
        torch.set_num_threads(args.threads)
    out = benchmark_configs(
        args.configs, cfg_options=args.cfg_options,
        options_of=args.options_of, batch_size=args.batch_size,
        iters=args.iters, warmup=args.warmup, amp=args.amp,
        compile=args.compile, device=args.device, seed=args.seed,
        phases=args.phases,
        flops='only' if args.flops_only else args.flops,
        shared_init=not args.no_shared_init)
    print('\n'.join(out['table']))
    print(write_json(out, args.out))
    return out


if __name__ == '__main__':
    main()
