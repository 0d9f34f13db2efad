"""The length of one run of a config under the study's budget, and its
schedules compressed to that length.

A config's budget is ``iters`` or ``epochs`` divided by its cost ratio, set
in the config's own unit (``train_cfg.max_iters`` or ``max_epochs``); the
``begin`` / ``end`` / ``T_max`` of every ``param_scheduler`` entry, the
``start`` / ``interval`` of every custom hook and Self-Guided MAE's switch
schedule are scaled by new length / config length, so warm-up fractions and
switch points keep their place in the run.
"""
import math
from typing import Dict

from mmengine.config import Config

#: schedule / hook fields compressed with the run's length
SCHEDULER_KEYS = ('begin', 'end', 'T_max')
HOOK_KEYS = ('start', 'interval')
#: SelfGuidedMAE's switch schedule (model.switch), compressed likewise
SWITCH_KEYS = ('interval', 'earliest', 'fallback', 'start')


def loop_unit(cfg: Config) -> str:
    """``'iters'`` or ``'epochs'``: how ``cfg.train_cfg`` counts its length."""
    train_cfg = cfg.get('train_cfg') or {}
    has = [k for k in ('max_iters', 'max_epochs')
           if train_cfg.get(k) is not None]
    if len(has) != 1:
        raise ValueError(
            f'{cfg.filename}: train_cfg must set exactly one of max_iters and '
            f'max_epochs, got {dict(train_cfg)}')
    return 'iters' if has[0] == 'max_iters' else 'epochs'


def images_per_iter(cfg: Config) -> int:
    """Training images one iteration reads: the batch, or for MLO-MAE's
    loop K batches (K = ``train_cfg.mae_batches_per_iter``, default the
    model's ``hypergrad.unroll_steps``)."""
    batch = int(cfg.train_dataloader.batch_size)
    if cfg.train_cfg.get('type') == 'MLOTrainLoop':
        k = cfg.train_cfg.get('mae_batches_per_iter') or \
            (cfg.model.get('hypergrad') or {}).get('unroll_steps', 1)
        batch *= int(k)
    return batch


def iters_per_epoch(cfg: Config, num_train: int) -> int:
    batch = images_per_iter(cfg)
    n = num_train // batch if cfg.train_dataloader.get('drop_last') else \
        math.ceil(num_train / batch)
    if n < 1:
        raise ValueError(
            f'{cfg.filename}: {num_train} training images give no full batch '
            f'of {batch} (drop_last=True)')
    return n


def run_length(cfg: Config, budget_unit: str, budget: float, ratio: float,
               num_train: int) -> Dict:
    """The length of one run of ``cfg`` in its own unit.

    ``budget`` (in ``budget_unit``, 'iters' or 'epochs') / ``ratio``,
    converted with the config's iterations per epoch when the units differ
    and rounded to at least 1.
    """
    unit = loop_unit(cfg)
    ipe = iters_per_epoch(cfg, num_train)
    target = budget / ratio
    if budget_unit != unit:
        target = target * ipe if unit == 'iters' else target / ipe
    length = max(1, int(round(target)))
    iterations = length if unit == 'iters' else length * ipe
    return dict(unit=unit, length=length, iterations=iterations,
                iters_per_epoch=ipe, ratio=ratio,
                mae_steps=iterations * ratio,
                batch_size=int(cfg.train_dataloader.batch_size),
                images_per_iter=images_per_iter(cfg),
                old_length=int(cfg.train_cfg[f'max_{unit}']))


def _scaled(value, scale: float) -> int:
    return 0 if value == 0 else max(1, int(round(value * scale)))


def schedule_options(cfg: Config, scale: float) -> Dict[str, int]:
    """cfg-options that compress ``param_scheduler`` and ``custom_hooks`` by
    ``scale`` (new length / config length)."""
    opts = {}
    sched = cfg.get('param_scheduler') or []
    if isinstance(sched, dict) and 'type' not in sched:
        groups = list(sched.items())  # one list per optimizer (CL/MLO-MAE)
    else:
        groups = [(None, sched)]
    for name, entries in groups:
        prefix = 'param_scheduler' + (f'.{name}' if name is not None else '')
        if isinstance(entries, dict):  # a single scheduler
            items = [(prefix, entries)]
        else:
            items = [(f'{prefix}.{i}', s) for i, s in enumerate(entries)]
        for key_prefix, s in items:
            new = {}
            for key in SCHEDULER_KEYS:
                v = s.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool) \
                        and v < 1e8:  # mmengine's INF end is left alone
                    new[key] = _scaled(v, scale)
            if 'begin' in new and 'end' in new and new['end'] <= new['begin']:
                new['end'] = new['begin'] + 1
            for key, v in new.items():
                opts[f'{key_prefix}.{key}'] = v
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        for key in HOOK_KEYS:
            v = hook.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                opts[f'custom_hooks.{i}.{key}'] = _scaled(v, scale)
    # Self-Guided MAE keeps its switch schedule in the model
    model = cfg.get('model') or {}
    for key in SWITCH_KEYS:
        v = (model.get('switch') or {}).get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            opts[f'model.switch.{key}'] = max(1, _scaled(v, scale))
    v = model.get('refresh_interval')
    if isinstance(v, int) and not isinstance(v, bool):
        opts['model.refresh_interval'] = max(1, _scaled(v, scale))
    return opts
