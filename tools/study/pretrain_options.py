"""The ``--cfg-options`` of one pretraining run of the study: data, length,
schedule, checkpoints, logging and seed, rendered as ``key=value`` strings
that mmengine's ``DictAction`` parses back unchanged."""
import argparse
import re
from typing import Dict, List, Optional

from mmengine.config import Config, DictAction

from .run_length import schedule_options

#: what a ``--cfg-options`` value cannot carry (also refused in labels)
UNSAFE = re.compile(r'[\s,\[\]()\'"]')


def pretrain_options(cfg: Config, data: Dict, length: Dict, seed: int,
                     num_workers: Optional[int] = None,
                     ckpt_interval: Optional[int] = None,
                     experiment_name: Optional[str] = None) -> Dict:
    """All cfg-options of one pretraining run: data, length, schedule,
    checkpoints, seed (values that mmengine's ``DictAction`` parses back
    unchanged, see :func:`render_options`)."""
    unit = length['unit']
    ds = cfg.train_dataloader.dataset
    if 'dataset' in ds or 'datasets' in ds:
        raise ValueError(
            f'{cfg.filename}: train_dataloader.dataset is a wrapper '
            f'({ds.get("type")}); the study points a class-folder dataset '
            '(data_root, data_prefix, ann_file) at --data')
    opts = {
        'train_dataloader.dataset.data_root': data['root'],
        'train_dataloader.dataset.data_prefix': data['train_split'],
        'train_dataloader.dataset.ann_file': '',
        f'train_cfg.max_{unit}': length['length'],
    }
    if cfg.train_cfg.get('labelled_split'):  # MLO-MAE's levels 2 and 3
        opts.update({
            'train_cfg.labelled_split.dataset.data_root': data['root'],
            'train_cfg.labelled_split.dataset.data_prefix':
            data['train_split'],
            'train_cfg.labelled_split.dataset.ann_file': '',
        })
    for i, _ in enumerate(cfg.train_cfg.get('heldout_datasets') or []):
        opts.update({
            f'train_cfg.heldout_datasets.{i}.data_root': data['root'],
            f'train_cfg.heldout_datasets.{i}.data_prefix': data['val_split'],
            f'train_cfg.heldout_datasets.{i}.ann_file': '',
        })
    if num_workers is not None:
        loaders = ['train_dataloader']
        for key in ('train_split_dataloader', 'val_split_dataloader'):
            if cfg.train_cfg.get(key):
                loaders.append(f'train_cfg.{key}')
        for loader in loaders:
            opts[f'{loader}.num_workers'] = num_workers
            opts[f'{loader}.persistent_workers'] = num_workers > 0
    opts.update(schedule_options(cfg, length['length'] / length['old_length']))
    interval = ckpt_interval or max(1, length['length'] // 10)
    logger = (cfg.get('default_hooks') or {}).get('logger') or {}
    every = logger.get('interval')
    if isinstance(every, int) and not isinstance(every, bool):
        # logged values (mask_specificity) in the last tenth of the run
        opts['default_hooks.logger.interval'] = min(
            every, max(1, length['iterations'] // 20))
    opts.update({
        'default_hooks.checkpoint.interval': interval,
        'default_hooks.checkpoint.by_epoch': unit == 'epochs',
        'default_hooks.checkpoint.max_keep_ckpts': 2,
        'randomness.seed': seed,
    })
    if experiment_name:
        opts['experiment_name'] = experiment_name
    return opts


def render_options(opts: Dict) -> List[str]:
    """``key=value`` strings for ``--cfg-options``, checked to parse back to
    the same values through mmengine's ``DictAction``."""
    out = []
    for key, value in opts.items():
        if isinstance(value, str) and UNSAFE.search(value):
            raise ValueError(
                f'{key}={value!r}: --cfg-options cannot carry white space, '
                'commas, brackets or quotes; use a path without them')
        out.append(f'{key}={value}')
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parsed = parser.parse_args(['--cfg-options', *out]).cfg_options
    bad = {k: (v, parsed.get(k)) for k, v in opts.items()
           if parsed.get(k) != v or type(parsed.get(k)) is not type(v)}
    if bad:
        raise ValueError(f'--cfg-options would not carry these values '
                         f'(intended, parsed): {bad}')
    return out
