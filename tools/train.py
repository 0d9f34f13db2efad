"""Train with mmengine's Runner (mmpretrain's tools/train.py conventions).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher pytorch]

A run stopped by SIGTERM / SIGUSR1 (PreemptionHook) exits with status 75
after saving; the next start in the same work directory resumes from it.
"""
import argparse
import logging
import os
import os.path as osp
import sys

import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mlmask_mm.engine.config_checks import (check_pretrained_checkpoint,
                                            prepare_config)
from mlmask_mm.engine.hooks.preemption_hook import (MARKER,
                                                    TrainingStopped)
from mlmask_mm.utils.checkpoint_files import resolve_resume
from mlmask_mm.utils.dist import close_process_group, finish_distributed_run


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or without a value from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr by the actual batch size')
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
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    marker = osp.join(cfg.work_dir, MARKER)
    if args.resume is None and not cfg.get('resume') and osp.isfile(marker):
        # a run stopped by a signal (PreemptionHook): its next start resumes
        print(f'{marker}: the run in this work directory was stopped by a '
              'signal; resuming it (delete the file to start over)',
              flush=True)
        cfg.resume = True
        cfg.load_from = None
    if args.auto_scale_lr:
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr', {}), enable=True)
    cfg = prepare_config(cfg)
    check_pretrained_checkpoint(cfg)
    # a damaged checkpoint is named here; auto mode skips damaged ones
    resolve_resume(cfg)
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
    except TrainingStopped as stop:  # saved; exit status 75
        if dist.is_available() and dist.is_initialized():
            stopped(stop.code)
        raise
    finish_distributed_run()


def stopped(code: int) -> None:
    """Leave with ``code`` after a PreemptionHook stop (the checkpoint is
    written; distributed: without interpreter finalisation, see
    mlmask_mm.utils.dist.finish_distributed_run)."""
    close_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == '__main__':
    main()
