"""Command line of the study (``tools/misc/study.py``, docs/study.md)."""
import argparse
import sys
from typing import Dict, Optional, Sequence

from mmengine.config import DictAction

from .study import DEFAULT_PROBE, RANDOM_INIT, Study


def parse_args(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(
        description='Equal-budget study of pretraining configs: pretrain, '
        'convert, linear probe and few-shot probe, table and plot '
        '(docs/study.md)',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('configs', nargs='+', metavar='CONFIG',
                   help='pretraining configs')
    p.add_argument('--data', required=True, metavar='ROOT',
                   help='ROOT/<train-split>/<class>/ and ROOT/<val-split>/'
                   '<class>/ image folders')
    p.add_argument('--train-split', default='train',
                   help='pretraining (and probe fitting)')
    p.add_argument('--probe-split',
                   help='fit both probes on ROOT/<probe-split>/ instead '
                   '(e.g. a class-balanced subset of the train part; must '
                   'share no image with the val split)')
    p.add_argument('--val-split', default='val',
                   help='reported on only')
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument('--iters', type=int,
                        help='iterations per run (divided by the cost ratio)')
    budget.add_argument('--epochs', type=float,
                        help='epochs per run (divided by the cost ratio)')
    p.add_argument('--cost', nargs='+', metavar='CONFIG=RATIO',
                   help='cost of one training iteration of CONFIG in plain '
                   'MAE steps (CONFIG: path, file name or stem)')
    p.add_argument('--cost-file', nargs='+', metavar='JSON',
                   help='cost ratios: {"CONFIG": RATIO} or [{"config": ..., '
                   '"ratio": ...}]')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   metavar='KEY=VALUE', help='more overrides of every '
                   'pretraining config (before the study\'s own)')
    p.add_argument('--continue', nargs='+', dest='continue_from',
                   metavar='LABEL=BASE@N',
                   help='continued pretraining: LABEL starts from BASE\'s '
                   'checkpoint after N of BASE\'s units (same seed) and '
                   'gets the rest of the budget')
    p.add_argument('--random-init', action='store_true',
                   help='also probe the untrained model of the first config '
                   f'(rows {RANDOM_INIT!r})')
    p.add_argument('--mask-content', type=int, nargs='?', const=256,
                   default=0, metavar='IMAGES',
                   help='also test whether each final checkpoint\'s masks '
                   'follow content (tools/analysis_tools/'
                   'analyze_mask_content.py on IMAGES images of the probe '
                   'part, default 256)')
    p.add_argument('--reuse', nargs='+', metavar='JSON',
                   help='study.json files of earlier sittings (another '
                   'machine): their finished runs are not run again')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    p.add_argument('--labels', nargs='+', help='names of the configs in the '
                   'outputs (default: file stems)')
    p.add_argument('--probes', nargs='*', choices=('linear', 'fewshot'),
                   default=['linear', 'fewshot'])
    p.add_argument('--probe-config', help='linear-probe recipe (default: '
                   f'configs/{DEFAULT_PROBE})')
    p.add_argument('--probe-epochs', type=int,
                   help='linear-probe epochs (default: the recipe\'s; its '
                   'schedule is compressed to them)')
    p.add_argument('--probe-batch-size', type=int)
    p.add_argument('--shots', nargs='+', type=int, default=[1, 2, 4, 8, 16])
    p.add_argument('--fewshot-feature', choices=('cls_token', 'mean_patch'),
                   default='cls_token',
                   help='few-shot probe feature: class token or mean of the '
                   'patch tokens, after the final LayerNorm')
    p.add_argument('--fewshot-seeds', type=int, default=3,
                   help='few-shot draws per run')
    p.add_argument('--num-workers', type=int,
                   help='data loader workers of every step (default: each '
                   'config\'s)')
    p.add_argument('--ckpt-interval', type=int,
                   help='pretraining checkpoint interval in the config\'s '
                   'unit (default: a tenth of the run)')
    p.add_argument('--device', help='few-shot feature extraction device')
    p.add_argument('--root', metavar='DIR',
                   help='the checkout whose tools/ the study runs, and the '
                   'working directory and PYTHONPATH of its steps '
                   '(default: the current working directory)')
    p.add_argument('--out-dir', default='work_dirs/study')
    p.add_argument('--no-plot', action='store_true')
    p.add_argument('--dry-run', action='store_true',
                   help='check everything and write commands.sh only')
    p.add_argument('--in-process', action='store_true',
                   help='run the tools in this process (no interpreter '
                   'start per step; for tests and small studies)')
    args = p.parse_args(argv)
    args.argv = ['tools/misc/study.py',
                 *(sys.argv[1:] if argv is None else argv)]
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    return Study(parse_args(argv)).run()
