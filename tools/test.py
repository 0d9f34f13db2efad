"""Test a checkpoint with mmengine's Runner (mmpretrain's tools/test.py).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--out-item {pred,metrics}] [--cfg-options key=value ...]
        [--launcher pytorch]

The config must define ``test_dataloader`` and ``test_evaluator`` (and
optionally ``test_cfg``): a classification / linear-probe config that uses the
pretrained backbone.  MAE pre-training configs have no test set; for them the
tool stops with an error that names the missing settings.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Sequence

import mmengine
from mmengine.config import Config, DictAction
from mmengine.evaluator import BaseMetric
from mmengine.runner import Runner

from mlmask_mm.engine.config_checks import prepare_config
from mlmask_mm.utils.dist import finish_distributed_run

TEST_KEYS = ('test_dataloader', 'test_evaluator')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and eval) a model with a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        help='the file to write the results to: the predictions (a .pkl '
        'file) with --out-item pred (the default), or the metrics (.json, '
        '.yaml or .pkl) with --out-item metrics')
    parser.add_argument(
        '--out-item',
        choices=['pred', 'metrics'],
        help='what to write to --out (default: pred)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value (xxx=yyy format)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def missing_test_settings(cfg: Config) -> List[str]:
    """The settings mmengine needs to test that ``cfg`` lacks."""
    return [key for key in TEST_KEYS if not cfg.get(key)]


class ResultsDumper(BaseMetric):
    """Write every prediction (``DataSample.to_dict()``) to a pickle file."""

    def __init__(self, out_file_path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.out_file_path = out_file_path

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            if hasattr(sample, 'to_dict'):
                sample = sample.to_dict()
            self.results.append(_to_cpu(sample))

    def compute_metrics(self, results: list) -> dict:
        mmengine.dump(results, self.out_file_path)
        return {}


def _to_cpu(obj):
    if hasattr(obj, 'detach'):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def build_config(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    missing = missing_test_settings(cfg)
    if missing:
        sys.exit(
            f'error: {args.config} has no {" and no ".join(missing)}, so '
            'there is nothing to test: it is a pre-training config (MAE '
            'pre-training has no test set). Test the pretrained backbone '
            'with a classification or linear-probe config that defines '
            'test_dataloader and test_evaluator (test_cfg is optional), '
            'or add them with --cfg-options.')
    if not cfg.get('test_cfg'):
        cfg.test_cfg = dict()
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        sys.exit(f'error: checkpoint {args.checkpoint!r} is not a file')
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.out is not None and args.out_item in (None, 'pred') and \
            not args.out.endswith(('.pkl', '.pickle')):
        sys.exit(f'error: --out {args.out!r}: the predictions are written '
                 'to a .pkl file')
    return prepare_config(cfg)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    if args.out and args.out_item in (None, 'pred'):
        runner.test_evaluator.metrics.append(
            ResultsDumper(out_file_path=args.out))
    metrics = runner.test()
    if args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    finish_distributed_run()
    return metrics


if __name__ == '__main__':
    main()
