"""Equal-budget study of pretraining configs: pretrain, convert, probe, table.

For every pretraining config and seed, with mmengine's tools (see
``docs/study.md``)::

    tools/train.py CONFIG --work-dir RUN/pretrain --resume --cfg-options ..
    tools/model_converters/mlmask2backbone.py RUN/pretrain/LAST backbone.pth
    tools/train.py RUN/linear_probe_<E>e.py --resume       (fit: train part)
    tools/test.py RUN/linear_probe_<E>e.py LAST --out ...  (report: val part)
    tools/analysis_tools/fewshot.py RUN/pretrain/LAST --data ROOT ...     (train -> val)

then ``study.md`` / ``study.json`` (mean ± sample std over seeds per config
and metric), ``study.png`` and ``commands.sh`` (every command of the study).

Budget: ``iters`` or ``epochs`` per config, divided by the config's cost
ratio when ratios are given (one training iteration of the config = RATIO
plain-MAE steps), so every config gets the same compute.  The length is set
in the config's own unit (``train_cfg.max_iters`` or ``max_epochs``), and the
config's schedules are compressed proportionally: the ``begin`` / ``end`` /
``T_max`` of every ``param_scheduler`` entry and the ``start`` / ``interval``
of every custom hook, so warm-up fractions and switch points keep their
place in the run.

Every step is skipped when its output exists, and training resumes from the
run's last checkpoint (``--resume``), so a study can span several sittings.
"""
import argparse
import datetime
import json
import math
import os
import os.path as osp
import re
import runpy
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

from ..paths import config_path, tool_path
from ..utils.checkpoint_files import newest_complete_checkpoint
from .study_continue import (kept_checkpoints, logged_mean, parse_continue,
                             spent_budget)
from .study_reuse import complete, find_reusable, load_reusable

#: the folder above the package: the working directory and PYTHONPATH of
#: the steps (a checkout's root, where relative data paths start)
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: the tools the study calls, below tools/ (of the checkout, or of
#: mlmask_mm/.mim in a wheel install: mlmask_mm.paths): the one place to
#: update when tools/ is reorganised
TOOLS = dict(
    train='train.py',
    test='test.py',
    convert='model_converters/mlmask2backbone.py',
    fewshot='analysis_tools/fewshot.py',
    init='misc/init_checkpoint.py',
    mask_content='analysis_tools/mask_content_test.py',
)
#: the mask_content_test figures the study's table shows
CONTENT_KEYS = ('flip_same', 'flip_reference', 'shift_same',
                'shift_reference', 'shuffle_same', 'mean_colour_same',
                'between_images', 'texture_auc', 'mask_specificity')
#: the label of ``--random-init``'s rows
RANDOM_INIT = 'random-init'
#: below configs/
DEFAULT_PROBE = osp.join(
    'benchmarks', 'vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')
#: schedule / hook fields compressed with the run's length
SCHEDULER_KEYS = ('begin', 'end', 'T_max')
HOOK_KEYS = ('start', 'interval')
#: SelfGuidedMAE's switch schedule (model.switch), compressed likewise
SWITCH_KEYS = ('interval', 'earliest', 'fallback', 'start')
_UNSAFE = re.compile(r'[\s,\[\]()\'"]')


def tool(name: str) -> str:
    """Absolute path of one of :data:`TOOLS`, in the installed tools/."""
    try:
        return tool_path(TOOLS[name])
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{e}: update TOOLS in {__file__}') from e


# ------------------------------------------------------------------ data
def class_folders(root: str, split: str) -> Dict[str, int]:
    """``{class: number of images}`` of ``root/split/<class>/``."""
    folder = osp.join(root, split)
    if not osp.isdir(folder):
        raise FileNotFoundError(
            f'{folder} is not a folder: --data ROOT needs ROOT/{split}/'
            '<class>/ image folders')
    counts = {}
    for c in sorted(os.listdir(folder)):
        if osp.isdir(osp.join(folder, c)):
            counts[c] = sum(1 for f in os.listdir(osp.join(folder, c))
                            if f.lower().endswith(IMAGE_EXTENSIONS))
    if not counts:
        raise ValueError(f'{folder} holds no class folders')
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise ValueError(f'{folder}: class folders without images: {empty}')
    return counts


def check_data(root: str, train_split: str, val_split: str,
               probe_split: Optional[str] = None) -> Dict:
    """The study's data: class-folder trees with the same classes, the
    pretraining part, the reported part and the part both probes are fitted
    on (default: the pretraining part), which must not share an image
    (resolved path) with the reported part."""
    root = osp.abspath(root)
    probe_split = probe_split or train_split
    if val_split in (train_split, probe_split):
        raise ValueError(f'--val-split {val_split!r} is also the train or '
                         'probe split: the reported part must be held out')
    train = class_folders(root, train_split)
    val = class_folders(root, val_split)
    probe = class_folders(root, probe_split)
    for name, other in ((val_split, val), (probe_split, probe)):
        if sorted(train) != sorted(other):
            raise ValueError(
                f'{osp.join(root, train_split)} and {osp.join(root, name)} '
                f'have different classes: {sorted(set(train) ^ set(other))}')
    if probe_split != train_split:
        shared = _real_files(root, probe_split) & _real_files(root, val_split)
        if shared:
            raise ValueError(
                f'--probe-split {probe_split!r} and --val-split '
                f'{val_split!r} share {len(shared)} images, e.g. '
                f'{sorted(shared)[0]}')
    return dict(root=root, train_split=train_split, val_split=val_split,
                probe_split=probe_split, classes=sorted(train),
                num_train=sum(train.values()), num_val=sum(val.values()),
                num_probe=sum(probe.values()))


def _real_files(root: str, split: str) -> set:
    """Resolved paths of the images of ROOT/split/<class>/ (links
    followed)."""
    folder = osp.join(root, split)
    return {osp.realpath(osp.join(folder, c, f))
            for c in os.listdir(folder) if osp.isdir(osp.join(folder, c))
            for f in os.listdir(osp.join(folder, c))}


# ------------------------------------------------------------------ costs
def _config_keys(path: str) -> Tuple[str, ...]:
    base = osp.basename(path)
    return (path, osp.abspath(path), base, osp.splitext(base)[0])


def match_costs(configs: Sequence[str], costs: Dict[str, float],
                labels: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """``{config path: ratio}``; a cost key names a config by its path,
    file name, file stem or label.  Every config needs exactly one ratio."""
    out, used = {}, set()
    labels = labels or [None] * len(configs)
    for cfg, label in zip(configs, labels):
        names = _config_keys(cfg) + ((label, ) if label else ())
        keys = [k for k in costs if k in names]
        if not keys:
            raise ValueError(
                f'no cost ratio for {cfg}: give --cost '
                f'{osp.splitext(osp.basename(cfg))[0]}=RATIO (ratios given: '
                f'{sorted(costs)})')
        if len({costs[k] for k in keys}) > 1:
            raise ValueError(f'{cfg} has several cost ratios: '
                             f'{ {k: costs[k] for k in keys} }')
        out[cfg] = costs[keys[0]]
        used.update(keys)
    unused = sorted(set(costs) - used)
    if unused:
        raise ValueError(f'cost ratios for configs not in the study: {unused}')
    return out


def parse_costs(items: Sequence[str] = (), files: Sequence[str] = ()
                ) -> Dict[str, float]:
    """``--cost CONFIG=RATIO`` and ``--cost-file FILE.json``.

    A JSON file is ``{"CONFIG": RATIO, ...}`` (optionally under a ``costs``,
    ``ratios`` or ``ratios_vs_first`` key: the benchmark CLI's JSON, whose
    first config is plain MAE) or a list of ``{"config": ..., "ratio": ...}``
    records (``cost`` / ``cost_ratio`` also read as the ratio).
    """
    costs = {}

    def add(key, value, where):
        try:
            ratio = float(value)
        except (TypeError, ValueError):
            raise ValueError(f'{where}: cost ratio of {key!r} is {value!r}, '
                             'not a number') from None
        if not ratio > 0 or math.isinf(ratio):
            raise ValueError(f'{where}: cost ratio of {key!r} must be a '
                             f'positive number, got {value!r}')
        if key in costs and costs[key] != ratio:
            raise ValueError(f'{where}: {key!r} has two cost ratios, '
                             f'{costs[key]} and {ratio}')
        costs[key] = ratio

    for path in files:
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict):
            data = next((data[k] for k in ('costs', 'ratios',
                                           'ratios_vs_first') if k in data),
                        data)
        if isinstance(data, dict):
            for k, v in data.items():
                add(k, v, path)
        elif isinstance(data, list):
            for rec in data:
                value = next((rec[k] for k in ('ratio', 'cost', 'cost_ratio')
                              if isinstance(rec, dict) and k in rec), None)
                if not isinstance(rec, dict) or 'config' not in rec or \
                        value is None:
                    raise ValueError(
                        f'{path}: record {rec!r} has no "config" and "ratio"')
                add(rec['config'], value, path)
        else:
            raise ValueError(f'{path}: expected a JSON object or list')
    for item in items:
        if '=' not in item:
            raise ValueError(f'--cost {item!r}: expected CONFIG=RATIO')
        key, value = item.rsplit('=', 1)
        add(key, value, '--cost')
    return costs


# ------------------------------------------------------------ run length
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
        if isinstance(value, str) and _UNSAFE.search(value):
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


# ----------------------------------------------------------- linear probe
def _arch_dims(arch) -> Tuple[int, int]:
    """(embed_dims, num_layers) of a ViT ``arch`` (dict or mmpretrain name)."""
    if isinstance(arch, str):
        from mmpretrain.models.backbones import VisionTransformer
        zoo = {k: v for keys, v in VisionTransformer.arch_zoo.items()
               for k in keys}
        if arch.lower() not in zoo:
            raise ValueError(f'unknown ViT arch {arch!r}')
        arch = zoo[arch.lower()]
    return int(arch['embed_dims']), int(arch['num_layers'])


def probe_config(pretrain_cfg: Config, probe_path: str, data: Dict,
                 backbone_ckpt: str, epochs: Optional[int], seed: int,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None) -> Config:
    """The linear-probe config of one run: ``probe_path`` (a frozen ViT +
    linear head recipe, e.g. ``configs/benchmarks/*linear*``) with the
    pretrained backbone's architecture, normalisation and image size, the
    converted checkpoint, the study's data (fit on the train part, test on
    the val part, no evaluation during training) and ``epochs``."""
    cfg = Config.fromfile(probe_path)
    src = pretrain_cfg.model.backbone
    embed, layers = _arch_dims(src.arch)
    size = src.get('img_size', 224)
    size = size if isinstance(size, int) else size[0]
    num_classes = len(data['classes'])
    b = cfg.model.backbone
    b.arch = src.arch
    b.img_size = src.get('img_size', 224)
    b.patch_size = src.get('patch_size', 16)
    if b.get('frozen_stages') is not None:
        b.frozen_stages = layers
    b.init_cfg = dict(type='Pretrained', checkpoint=backbone_ckpt)
    if cfg.model.get('neck') and 'input_features' in cfg.model.neck:
        cfg.model.neck.input_features = embed
    cfg.model.head.in_channels = embed
    cfg.model.head.num_classes = num_classes
    norm = pretrain_cfg.model.get('data_preprocessor') or \
        pretrain_cfg.get('data_preprocessor') or {}
    prep = dict(num_classes=num_classes,
                **{k: norm[k] for k in ('mean', 'std', 'to_rgb') if k in norm})
    if cfg.get('data_preprocessor') is not None:
        cfg.data_preprocessor.update(prep)
    if cfg.model.get('data_preprocessor') is not None:
        cfg.model.data_preprocessor.update(prep)
    elif cfg.get('data_preprocessor') is None:
        cfg.data_preprocessor = prep

    def loader(base, split):
        base = dict(base)
        ds = dict(base['dataset'])
        ds.update(data_root=data['root'], data_prefix=split, ann_file='',
                  metainfo=dict(classes=tuple(data['classes'])))
        pipeline = []
        for t in ds.get('pipeline', []):
            t = dict(t)
            for key in ('scale', 'crop_size'):
                if isinstance(t.get(key), int):
                    t[key] = size
            pipeline.append(t)
        ds['pipeline'] = pipeline
        base['dataset'] = ds
        if batch_size:
            base['batch_size'] = batch_size
        if num_workers is not None:
            base['num_workers'] = num_workers
            base['persistent_workers'] = num_workers > 0
        return base

    cfg.train_dataloader = loader(cfg.train_dataloader,
                                  data.get('probe_split') or data['train_split'])
    test = loader(cfg.get('test_dataloader') or cfg.val_dataloader,
                  data['val_split'])
    test['sampler'] = dict(type='DefaultSampler', shuffle=False)
    test['drop_last'] = False
    cfg.test_dataloader = test
    cfg.test_evaluator = dict(type='Accuracy',
                              topk=(1, 5) if num_classes > 5 else (1, ))
    cfg.test_cfg = cfg.get('test_cfg') or dict()
    # the val part is for the final report only: no evaluation in training
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    if cfg.train_cfg.get('val_interval') is not None:
        cfg.train_cfg.pop('val_interval')
    old = int(cfg.train_cfg.max_epochs)
    epochs = int(epochs or old)
    cfg.train_cfg.max_epochs = epochs
    for key, value in schedule_options(cfg, epochs / old).items():
        cfg.merge_from_dict({key: value})
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=max(1, epochs // 5), by_epoch=True,
        max_keep_ckpts=1)
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    return cfg


# ----------------------------------------------------------------- running
def python_command(name: str, args: Sequence[str]) -> List[str]:
    return [sys.executable, tool(name), *map(str, args)]


def run_command(cmd: Sequence[str], log_file: Optional[str],
                in_process: bool = False) -> float:
    """Run ``python TOOL ARGS``; returns the wall time in seconds.

    In a subprocess (default: stdout/stderr appended to ``log_file``), or
    in this process through ``runpy`` (``in_process``: no interpreter start,
    the tools share this process's imports and state).
    """
    start = time.time()
    if in_process:
        saved = sys.argv
        sys.argv = list(cmd[1:])
        try:
            runpy.run_path(cmd[1], run_name='__main__')
        except SystemExit as e:
            if e.code not in (None, 0):
                raise RuntimeError(f'{shlex.join(cmd)} exited with {e.code}')
        finally:
            sys.argv = saved
        return time.time() - start
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + (os.pathsep + env['PYTHONPATH']
                                if env.get('PYTHONPATH') else '')
    with open(log_file, 'a') as log:
        log.write(f'\n$ {shlex.join(cmd)}\n')
        log.flush()
        rc = subprocess.call(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                             cwd=REPO, env=env)
    if rc != 0:
        with open(log_file) as f:
            tail = ''.join(f.readlines()[-30:])
        raise RuntimeError(f'{shlex.join(cmd)} failed (exit {rc}); the end '
                           f'of {log_file}:\n{tail}')
    return time.time() - start


def _add_sitting(run_dir: str, seconds: float, stopped: bool) -> None:
    timing = osp.join(run_dir, 'pretrain_time.json')
    t = dict(seconds=0.0, sittings=0, stopped_sittings=0)
    if osp.isfile(timing):
        t.update(_read_json(timing))
    t['seconds'] += seconds
    t['sittings'] += 1
    t['stopped_sittings'] += int(stopped)
    _write_json(t, timing)


def open_sitting(run_dir: str, work_dir: str) -> None:
    """Mark a pretraining sitting as started (``pretrain_sitting.json``).

    A marker left by an earlier sitting means that sitting was stopped
    (killed, or its training failed) before its time was recorded: its time
    is taken as the newest modification under ``work_dir`` (checkpoints,
    logs) minus its start, and added to ``pretrain_time.json`` as a stopped
    sitting.
    """
    marker = osp.join(run_dir, 'pretrain_sitting.json')
    os.makedirs(run_dir, exist_ok=True)
    if osp.isfile(marker):
        start = _read_json(marker)['start']
        last = start
        for root, _, files in os.walk(work_dir):
            for f in files:
                last = max(last, osp.getmtime(osp.join(root, f)))
        _add_sitting(run_dir, last - start, stopped=True)
    _write_json(dict(start=time.time()), marker)


def close_sitting(run_dir: str, seconds: float) -> None:
    """Record a finished sitting's wall time and remove its marker."""
    _add_sitting(run_dir, seconds, stopped=False)
    os.remove(osp.join(run_dir, 'pretrain_sitting.json'))


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _write_json(obj, path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        '%Y-%m-%d %H:%M UTC')


def mean_std(values: Sequence[float]) -> Tuple[Optional[float],
                                                Optional[float]]:
    """Mean and sample std (ddof 1; None for fewer than two values)."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return None, None
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((x - m)**2 for x in v) / (len(v) - 1))


def fmt(mean: Optional[float], std: Optional[float], digits: int = 1) -> str:
    if mean is None:
        return '–'
    return f'{mean:.{digits}f} ± ' + ('–' if std is None else
                                      f'{std:.{digits}f}')


class Study:
    """Plan, run (skipping what exists) and summarise one study."""

    def __init__(self, args) -> None:
        self.args = args
        self.out = osp.abspath(args.out_dir)
        self.data = check_data(args.data, args.train_split, args.val_split,
                               args.probe_split)
        self.configs = [osp.abspath(c) for c in args.configs]
        for c in self.configs:
            if not osp.isfile(c):
                raise FileNotFoundError(f'config {c} does not exist')
        self.labels = args.labels or [
            osp.splitext(osp.basename(c))[0] for c in self.configs]
        if len(self.labels) != len(self.configs):
            raise ValueError(f'--labels: {len(self.labels)} names for '
                             f'{len(self.configs)} configs')
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f'--labels / config names must differ: '
                             f'{self.labels}')
        if args.random_init and RANDOM_INIT in self.labels:
            raise ValueError(f'label {RANDOM_INIT!r} is --random-init\'s')
        for label in self.labels:
            if _UNSAFE.search(label) or '/' in label:
                raise ValueError(f'label {label!r}: use letters, digits, '
                                 '"-", "_" and "."')
        costs = parse_costs(args.cost or (), args.cost_file or ())
        self.costs = match_costs(self.configs, costs, self.labels) \
            if costs else \
            {c: 1.0 for c in self.configs}
        self.budget_unit = 'iters' if args.iters is not None else 'epochs'
        self.budget = args.iters if args.iters is not None else args.epochs
        if not self.budget or self.budget <= 0:
            raise ValueError(f'--{self.budget_unit} must be positive, got '
                             f'{self.budget}')
        self.probe = osp.abspath(args.probe_config or
                                 config_path(DEFAULT_PROBE))
        if 'linear' in args.probes and not osp.isfile(self.probe):
            raise FileNotFoundError(f'--probe-config {self.probe} does not '
                                    'exist')
        self.probe_epochs = args.probe_epochs or int(
            Config.fromfile(self.probe).train_cfg.max_epochs) \
            if 'linear' in args.probes else None
        self.continued = parse_continue(args.continue_from, self.labels)
        self.runs = []
        for c, label in zip(self.configs, self.labels):
            for seed in args.seeds:
                base = None
                if label in self.continued:
                    base = next(r for r in self.runs if r['seed'] == seed and
                                r['label'] == self.continued[label][0])
                self.runs.append(self._plan(c, label, seed, base))
        self.rows = list(zip(self.configs, self.labels))
        if args.random_init:
            self.rows.append((self.configs[0], RANDOM_INIT))
            self.runs += [self._plan_random_init(seed) for seed in args.seeds]
        self.commands: List[str] = []
        self._reuse(args.reuse)

    def _reuse(self, paths: Optional[Sequence[str]]) -> None:
        """Mark the runs that an earlier study.json finished (--reuse);
        a continued run that must still train needs its base's
        checkpoint here."""
        if not paths:
            return
        records = load_reusable(paths, self.settings())
        names = self.metric_names()
        for run in self.runs:
            rec = find_reusable(records, run, names)
            if rec is not None and self.args.mask_content and not \
                    run.get('random_init') and 'mask_content' not in rec:
                rec = None  # its masks were not tested there
            if rec is not None:
                run['reused'] = rec
        for run in self.runs:
            start = run.get('start_from')
            if (run.get('reused') or not start or self.args.dry_run or
                    osp.isfile(start) or osp.isfile(run['checkpoint']) or
                    newest_complete_checkpoint(
                        osp.join(run['dir'], 'pretrain')) is not None):
                continue
            base = next(r for r in self.runs if r['seed'] == run['seed'] and
                        r['label'] == run['length']['continued']['label'])
            if base.get('reused'):
                raise ValueError(
                    f'--reuse: {run["label"]} seed {run["seed"]} continues '
                    f'from {start}, which this machine lacks (its base run '
                    f'{base["label"]} seed {run["seed"]} is reused from '
                    f'{base["reused"]["reused_from"]}): run the base here '
                    'too (drop it from the reused JSON) or reuse both')

    # -- planning (everything checked before the first step runs)
    def _plan(self, config: str, label: str, seed: int,
              base: Optional[Dict] = None) -> Dict:
        cfg = Config.fromfile(config)
        user = dict(self.args.cfg_options or {})
        cfg.merge_from_dict(user)
        budget, start = self.budget, None
        if base is not None:  # --continue LABEL=BASE@N
            n = self.continued[label][1]
            blen = base['length']
            kept = kept_checkpoints(blen['length'], base['ckpt_interval'])
            if n not in kept:
                raise ValueError(
                    f'--continue {label}={base["label"]}@{n}: a run of '
                    f'{base["label"]} keeps the checkpoints after {kept} '
                    f'{blen["unit"]} (set --ckpt-interval to keep {n})')
            spent = spent_budget(blen, n, self.budget_unit)
            budget = self.budget - spent['budget']
            if budget <= 0:
                raise ValueError(
                    f'--continue {label}={base["label"]}@{n}: those {n} '
                    f'{blen["unit"]} cost the whole budget ({self.budget} '
                    f'{self.budget_unit})')
            prefix = 'iter' if blen['unit'] == 'iters' else 'epoch'
            start = osp.join(base['dir'], 'pretrain', f'{prefix}_{n}.pth')
            render_options({'load_from': start})  # a path --cfg-options carry
        length = run_length(cfg, self.budget_unit, budget,
                            self.costs[config], self.data['num_train'])
        if base is not None:
            length['continued'] = dict(
                label=base['label'], at=n, unit=base['length']['unit'],
                checkpoint=start, **spent)
            length['mae_steps'] += spent['mae_steps']
        name = f'{length["unit"]}{length["length"]}_seed{seed}'
        if base is not None:
            name = f'from-{base["label"]}{n}_{name}'
        run_dir = osp.join(self.out, 'runs', label, name)
        opts = pretrain_options(
            cfg, self.data, length, seed, self.args.num_workers,
            self.args.ckpt_interval, experiment_name=f'{label}_{name}')
        clash = sorted(set(user) & set(opts))
        if clash:
            raise ValueError(
                f'--cfg-options {clash}: the study sets these itself (data: '
                '--data, length: --iters/--epochs, seed: --seeds, ...)')
        opts = dict(user, **opts)
        merged = Config.fromfile(config)
        merged.merge_from_dict(dict(opts))  # the overrides apply cleanly
        loop_unit(merged)
        prefix = 'iter' if length['unit'] == 'iters' else 'epoch'
        return dict(
            config=config, label=label, seed=seed, cfg=cfg, dir=run_dir,
            length=length, options=render_options(opts),
            ckpt_interval=opts['default_hooks.checkpoint.interval'],
            start_from=start,
            checkpoint=osp.join(run_dir, 'pretrain',
                                f'{prefix}_{length["length"]}.pth'),
            backbone=osp.join(run_dir, 'backbone.pth'),
            probe_dir=osp.join(
                run_dir, f'linear_probe_{self.probe_epochs}e{self._suffix}'),
            fewshot_dir=osp.join(run_dir, self._fewshot_name))

    def _plan_random_init(self, seed: int) -> Dict:
        """The untrained model of the first config, probed like the
        pretrained ones (``tools/misc/init_checkpoint.py``)."""
        config = self.configs[0]
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(dict(self.args.cfg_options or {}))
        run_dir = osp.join(self.out, 'runs', RANDOM_INIT, f'init_seed{seed}')
        length = dict(unit='iters', length=0, iterations=0,
                      iters_per_epoch=None, ratio=0.0, mae_steps=0,
                      batch_size=int(cfg.train_dataloader.batch_size))
        return dict(
            config=config, label=RANDOM_INIT, seed=seed, cfg=cfg,
            dir=run_dir, length=length, options=[], random_init=True,
            start_from=None,
            checkpoint=osp.join(run_dir, 'pretrain', 'init.pth'),
            backbone=osp.join(run_dir, 'backbone.pth'),
            probe_dir=osp.join(
                run_dir, f'linear_probe_{self.probe_epochs}e{self._suffix}'),
            fewshot_dir=osp.join(run_dir, self._fewshot_name))

    @property
    def _fewshot_name(self) -> str:
        """``fewshot[_<feature>][_<probe split>]``: the class token's
        folder keeps its old name."""
        feature = self.args.fewshot_feature
        return 'fewshot' + ('' if feature == 'cls_token' else
                            f'_{feature}') + self._suffix

    @property
    def _suffix(self) -> str:
        """Probe folders of another probe split get its name."""
        probe = self.data['probe_split']
        return '' if probe == self.data['train_split'] else f'_{probe}'

    # -- steps
    def _step(self, cmd: List[str], done: bool, log: str) -> Optional[float]:
        self.commands.append(shlex.join(cmd))
        if done or self.args.dry_run:
            return None
        os.makedirs(osp.dirname(log), exist_ok=True)
        print(f'[study] {shlex.join(cmd)}', flush=True)
        seconds = run_command(cmd, log, self.args.in_process)
        print(f'[study] done in {seconds:.1f} s', flush=True)
        return seconds

    def pretrain(self, run: Dict) -> None:
        if run.get('random_init'):
            self._step(python_command('init', [
                run['config'], run['checkpoint'], '--seed', run['seed']]),
                osp.isfile(run['checkpoint']),
                osp.join(run['dir'], 'init.log'))
            return
        work = osp.join(run['dir'], 'pretrain')
        options, resume = list(run['options']), ['--resume']
        if run['start_from'] and (self.args.dry_run or
                                  newest_complete_checkpoint(work) is None):
            # a continued run's first sitting: the base's weights, from
            # iteration 0 (a later sitting resumes from its own checkpoint)
            options.append(f'load_from={run["start_from"]}')
            resume = []
        cmd = python_command('train', [run['config'], '--work-dir', work,
                                       *resume, '--cfg-options', *options])
        done = osp.isfile(run['checkpoint'])
        if not (done or self.args.dry_run):
            open_sitting(run['dir'], work)
        seconds = self._step(cmd, done, osp.join(run['dir'], 'pretrain.log'))
        if seconds is None:
            return
        if not osp.isfile(run['checkpoint']):
            raise RuntimeError(f'pretraining finished without '
                               f'{run["checkpoint"]}')
        close_sitting(run['dir'], seconds)

    def convert(self, run: Dict) -> None:
        cmd = python_command('convert', [run['checkpoint'], run['backbone']])
        self._step(cmd, osp.isfile(run['backbone']),
                   osp.join(run['dir'], 'convert.log'))

    def linear(self, run: Dict) -> None:
        a = self.args
        work = run['probe_dir']
        config = work + '.py'
        if not a.dry_run and not osp.isfile(config):
            cfg = probe_config(run['cfg'], self.probe, self.data,
                               run['backbone'], self.probe_epochs,
                               run['seed'], a.probe_batch_size,
                               a.num_workers)
            cfg.experiment_name = f'{run["label"]}_{osp.basename(work)}'
            os.makedirs(run['dir'], exist_ok=True)
            cfg.dump(config)
        last = osp.join(work, f'epoch_{self.probe_epochs}.pth')
        metrics = osp.join(work, 'metrics.json')
        log = osp.join(run['dir'], 'linear_probe.log')
        self._step(python_command('train', [config, '--work-dir', work,
                                            '--resume']),
                   osp.isfile(last) or osp.isfile(metrics), log)
        self._step(python_command('test', [
            config, last, '--work-dir', osp.join(work, 'test'), '--out',
            metrics, '--out-item', 'metrics']), osp.isfile(metrics), log)

    def fewshot(self, run: Dict) -> None:
        a = self.args
        result = osp.join(run['fewshot_dir'], 'fewshot.json')
        done = False
        if osp.isfile(result):
            s = _read_json(result)['settings']
            done = s['shots'] == list(a.shots) and \
                s['seeds'] == list(range(a.fewshot_seeds))
        # the pretraining checkpoint: its embedded config (meta.cfg) is the
        # exact architecture of the run, its backbone.* keys the weights
        args = [run['checkpoint'], '--data',
                self.data['root'], '--train-split', self.data['probe_split'],
                '--test-split', self.data['val_split'], '--shots', *a.shots,
                '--seeds', a.fewshot_seeds, '--labels', run['label'],
                '--out-dir', run['fewshot_dir'], '--no-plot',
                '--feature', a.fewshot_feature]
        if a.num_workers is not None:
            args += ['--num-workers', a.num_workers]
        if a.device:
            args += ['--device', a.device]
        self._step(python_command('fewshot', args), done,
                   osp.join(run['dir'], 'fewshot.log'))

    def mask_content(self, run: Dict) -> None:
        """The final checkpoint's masks on whole images of the probe part
        (``tools/analysis_tools/mask_content_test.py``).  Self-Guided
        MAE's cached relevance covers only its training images: its masks
        here are generated from the final model (``generation=
        'iteration'``)."""
        out = osp.join(run['dir'], 'mask_content.json')
        args = [run['config'], run['checkpoint'], '--data',
                osp.join(self.data['root'], self.data['probe_split']),
                '--num-images', self.args.mask_content, '--seed',
                run['seed'], '--out', out]
        if str(run['cfg'].model.get('type', '')).split('.')[-1] == \
                'SelfGuidedMAE':
            args += ['--cfg-options', 'model.generation=iteration']
        self._step(python_command('mask_content', args), osp.isfile(out),
                   osp.join(run['dir'], 'mask_content.log'))

    # -- results
    def collect(self, run: Dict) -> Dict:
        if run.get('reused'):
            return dict(run['reused'], dir=run['dir'], complete=True)
        rec = self._collect(run)
        rec['complete'] = complete(rec, self.metric_names())
        return rec

    def _collect(self, run: Dict) -> Dict:
        a = self.args
        rec = dict(config=osp.relpath(run['config'], REPO)
                   if run['config'].startswith(REPO) else run['config'],
                   label=run['label'], seed=run['seed'], dir=run['dir'],
                   **{k: run['length'][k] for k in (
                       'unit', 'length', 'iterations', 'iters_per_epoch',
                       'batch_size', 'ratio', 'mae_steps')})
        timing = osp.join(run['dir'], 'pretrain_time.json')
        rec['pretrain_seconds'] = _read_json(timing)['seconds'] \
            if osp.isfile(timing) else None
        if 'continued' in run['length']:
            rec['continued'] = run['length']['continued']
        # the masks of the last tenth of the run, as trained (every masking
        # method logs it; docs/study.md)
        rec['mask_specificity'] = None if run.get('random_init') else \
            logged_mean(osp.join(run['dir'], 'pretrain'), 'mask_specificity',
                        final_iter=run['length']['iterations'])
        content = osp.join(run['dir'], 'mask_content.json')
        if self.args.mask_content and osp.isfile(content):
            c = _read_json(content)
            rec['mask_content'] = {k: c[k] for k in CONTENT_KEYS}
        metrics = osp.join(run['probe_dir'], 'metrics.json')
        rec['metrics'] = {}
        if 'linear' in a.probes and osp.isfile(metrics):
            m = _read_json(metrics)
            rec['metrics']['linear_top1'] = m.get('accuracy/top1')
            if 'accuracy/top5' in m:
                rec['metrics']['linear_top5'] = m['accuracy/top5']
        result = osp.join(run['fewshot_dir'], 'fewshot.json')
        if 'fewshot' in a.probes and osp.isfile(result):
            for r in _read_json(result)['results']:
                if r['shots'] in a.shots:
                    rec['metrics'][f'fewshot_{r["shots"]}shot_top1'] = \
                        r['acc1_mean']
        return rec

    def metric_names(self) -> List[str]:
        names = []
        if 'linear' in self.args.probes:
            names.append('linear_top1')
            if len(self.data['classes']) > 5:
                names.append('linear_top5')
        if 'fewshot' in self.args.probes:
            names += [f'fewshot_{n}shot_top1' for n in self.args.shots]
        return names

    def summary(self, records: List[Dict]) -> List[Dict]:
        rows = []
        for config, label in self.rows:
            recs = [r for r in records if r['label'] == label]
            row = dict(label=label, config=recs[0]['config'],
                       seeds=[r['seed'] for r in recs],
                       **{k: recs[0][k] for k in (
                           'unit', 'length', 'iterations', 'ratio',
                           'mae_steps', 'batch_size')})
            row['pretrain_seconds'] = dict(zip(
                ('mean', 'std'),
                mean_std([r['pretrain_seconds'] for r in recs])))
            if 'continued' in recs[0]:
                row['continued'] = {k: recs[0]['continued'][k]
                                    for k in ('label', 'at', 'unit')}
            values = [r['mask_specificity'] for r in recs]
            mean, std = mean_std(values)
            row['mask_specificity'] = dict(
                mean=mean, std=std, n=sum(v is not None for v in values),
                values=values)
            row['metrics'] = {}
            for name in self.metric_names():
                values = [r['metrics'].get(name) for r in recs]
                mean, std = mean_std(values)
                row['metrics'][name] = dict(
                    mean=mean, std=std, n=sum(v is not None for v in values),
                    values=values)
            rows.append(row)
        return rows

    def settings(self) -> Dict:
        a = self.args
        return dict(
            budget=dict(unit=self.budget_unit, value=self.budget,
                        costs={osp.basename(c): r
                               for c, r in self.costs.items()},
                        cost_given=bool(a.cost or a.cost_file)),
            seeds=list(a.seeds), probes=list(a.probes),
            probe_config=self.probe, probe_epochs=self.probe_epochs,
            probe_batch_size=a.probe_batch_size, shots=list(a.shots),
            fewshot_seeds=a.fewshot_seeds, fewshot_feature=a.fewshot_feature,
            mask_content_images=a.mask_content,
            data={k: v for k, v in self.data.items() if k != 'classes'},
            classes=self.data['classes'])

    def markdown(self, rows: List[Dict], records: List[Dict],
                 date: str) -> str:
        s = self.settings()
        names = self.metric_names()
        titles = {'linear_top1': 'linear top-1', 'linear_top5': 'linear top-5'}
        titles.update({f'fewshot_{n}shot_top1': f'{n}-shot top-1'
                       for n in self.args.shots})
        budget = (f'{self.budget} {self.budget_unit}' +
                  (' of plain MAE, divided by each config\'s cost ratio'
                   if s['budget']['cost_given'] else ' per config'))
        lines = [
            '# Study', '',
            f'Written {date} by `tools/misc/study.py`. Data: '
            f'`{self.data["root"]}`, pretraining on '
            f'`{self.data["train_split"]}/` ({self.data["num_train"]} '
            f'images, {len(self.data["classes"])} classes), probes fitted '
            f'on `{self.data["probe_split"]}/` ({self.data["num_probe"]} '
            'images), reported on '
            f'`{self.data["val_split"]}/` ({self.data["num_val"]} images). '
            f'Budget: {budget}. '
            f'Seeds: {", ".join(map(str, self.args.seeds))}. '
            'Cells: mean ± sample std over the seeds (– : one value) in %; '
            'linear probe: `' + osp.basename(self.probe) + '` '
            f'({self.probe_epochs} epoch'
            f'{"" if self.probe_epochs == 1 else "s"}) on the frozen '
            'converted backbone; n-shot: `tools/analysis_tools/fewshot.py` on the '
            'pretraining checkpoint, ' + (
                'class token' if self.args.fewshot_feature == 'cls_token'
                else 'mean of the patch tokens') + ', L-BFGS softmax '
            'regression, '
            f'mean over {self.args.fewshot_seeds} draws per seed. '
            'Mask specificity: `mask_specificity` as logged in the last '
            'tenth of the pretraining (1: independent random masks, 0: one '
            'pattern for every image; – : not logged). '
            'Commands: `commands.sh`.', '',
            '| config | seeds | length | iterations | cost ratio | '
            'MAE-step eq. | pretrain s/run | mask specificity | ' +
            ' | '.join(titles[n] for n in names) + ' |',
            '|---|---:|---:|---:|---:|---:|---:|---:|' + '---:|' * len(names),
        ]
        for row in rows:
            t = row['pretrain_seconds']
            ms = row['mask_specificity']
            length = f'{row["length"]} {row["unit"]}'
            if 'continued' in row:
                c = row['continued']
                length += f' after {c["label"]} {c["at"]} {c["unit"]}'
            lines.append(
                f'| {row["label"]} | {len(row["seeds"])} | '
                f'{length} | {row["iterations"]} | '
                f'{row["ratio"]:g} | {row["mae_steps"]:g} | '
                f'{fmt(t["mean"], t["std"], 0)} | '
                f'{fmt(ms["mean"], ms["std"], 2)} | ' +
                ' | '.join(fmt(row['metrics'][n]['mean'],
                               row['metrics'][n]['std']) for n in names) +
                ' |')
        lines += ['', '## Runs', '',
                  '| config | seed | pretrain s | ' +
                  ' | '.join(titles[n] for n in names) + ' | run folder |',
                  '|---|---:|---:|' + '---:|' * len(names) + '---|']
        for r in records:
            secs = r['pretrain_seconds']
            lines.append(
                f'| {r["label"]} | {r["seed"]} | '
                f'{"–" if secs is None else f"{secs:.0f}"} | ' +
                ' | '.join('–' if r['metrics'].get(n) is None else
                           f'{r["metrics"][n]:.1f}' for n in names) +
                f' | `{osp.relpath(r["dir"], self.out)}` |')
        if self.args.mask_content:
            lines += self._content_table(records)
        return '\n'.join(lines) + '\n'

    def _content_table(self, records: List[Dict]) -> List[str]:
        lines = [
            '', '## Masks on whole images', '',
            f'`tools/analysis_tools/mask_content_test.py` on '
            f'{self.args.mask_content} images of `{self.data["probe_split"]}'
            '/` with the final checkpoint (docs/cl_mae.md): share of '
            'keep/mask decisions unchanged at the same positions after a '
            'flip / a shift by 2 patches / a patch shuffle (reference: what '
            'a masker that follows the content would keep), after filling '
            'the image with its mean colour (beside two different images), '
            'and P(a kept patch is more textured than a masked one). '
            'Random masks: about r² + (1-r)² everywhere, AUC 0.5.', '',
            '| config | seed | flip same (ref.) | shift same (ref.) | '
            'shuffle same | mean colour same (between images) | '
            'texture AUC | mask specificity |',
            '|---|---:|---:|---:|---:|---:|---:|---:|']
        for r in records:
            c = r.get('mask_content')
            if not c:
                continue
            lines.append(
                f'| {r["label"]} | {r["seed"]} | {c["flip_same"]:.3f} '
                f'({c["flip_reference"]:.3f}) | {c["shift_same"]:.3f} '
                f'({c["shift_reference"]:.3f}) | {c["shuffle_same"]:.3f} | '
                f'{c["mean_colour_same"]:.3f} ({c["between_images"]:.3f}) | '
                f'{c["texture_auc"]:.3f} | {c["mask_specificity"]:.3f} |')
        return lines

    def plot(self, rows: List[Dict], path: str) -> None:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        linear = 'linear' in self.args.probes
        few = 'fewshot' in self.args.probes
        panels = int(linear) + int(few)
        fig, axes = plt.subplots(1, max(panels, 1),
                                 figsize=(5 * max(panels, 1), 4),
                                 squeeze=False)
        axes = list(axes[0])
        if linear:
            ax = axes.pop(0)
            m = [r['metrics']['linear_top1'] for r in rows]
            ax.bar(range(len(rows)), [x['mean'] or 0 for x in m],
                   yerr=[x['std'] or 0 for x in m], capsize=4,
                   color=[f'C{i}' for i in range(len(rows))])
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels([r['label'] for r in rows], rotation=20,
                               ha='right', fontsize=8)
            ax.set_ylabel('top-1 (%)')
            ax.set_title(f'linear probe ({self.data["val_split"]})')
        if few:
            ax = axes.pop(0)
            shots = list(self.args.shots)
            for i, r in enumerate(rows):
                m = [r['metrics'][f'fewshot_{n}shot_top1'] for n in shots]
                ax.errorbar(shots, [x['mean'] if x['mean'] is not None
                                    else float('nan') for x in m],
                            yerr=[x['std'] or 0 for x in m], marker='o',
                            capsize=3, label=r['label'], color=f'C{i}')
            ax.set_xscale('log', base=2)
            ax.set_xticks(shots)
            ax.set_xticklabels([str(n) for n in shots])
            ax.set_xlabel('images per class')
            ax.set_ylabel('top-1 (%)')
            ax.set_title(f'few-shot ({self.data["val_split"]})')
            ax.legend(fontsize=8)
        budget = f'{self.budget} {self.budget_unit}' + (
            ' (MAE-step eq.)' if self.args.cost or self.args.cost_file else '')
        fig.suptitle(f'budget {budget}, mean ± std over '
                     f'{len(self.args.seeds)} seed(s)', fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    def write_commands(self, date: str) -> None:
        path = osp.join(self.out, 'commands.sh')
        with open(path, 'w') as f:
            f.write('#!/usr/bin/env bash\n'
                    f'# The commands of this study (tools/misc/study.py, '
                    f'{date}); each step is\n# skipped by the study tool when '
                    'its output exists.\n'
                    f'# study: {shlex.join(self.args.argv)}\n'
                    'set -e\n'
                    f'cd {shlex.quote(REPO)}\n'
                    f'export PYTHONPATH={shlex.quote(REPO)}'
                    '${PYTHONPATH:+:$PYTHONPATH}\n')
            for c in self.commands:
                f.write(c + '\n')
        os.chmod(path, 0o755)

    def write_results(self, date: Optional[str] = None):
        """study.json and study.md from what the run folders hold now
        (runs not finished yet: ``complete`` false, – in the tables)."""
        date = date or _now()
        records = [self.collect(r) for r in self.runs]
        rows = self.summary(records)
        result = dict(date=date, settings=self.settings(), summary=rows,
                      runs=records)
        _write_json(result, osp.join(self.out, 'study.json'))
        table = self.markdown(rows, records, date)
        with open(osp.join(self.out, 'study.md'), 'w') as f:
            f.write(table)
        return result, rows, table

    def run(self) -> Dict:
        os.makedirs(self.out, exist_ok=True)
        probes = self.args.probes
        for run in self.runs:
            if run.get('reused'):
                self.commands.append(
                    f'# {run["label"]} seed {run["seed"]}: results reused '
                    f'from {run["reused"]["reused_from"]}')
                continue
            self.pretrain(run)
            if probes:
                self.convert(run)
            if 'linear' in probes:
                self.linear(run)
            if 'fewshot' in probes:
                self.fewshot(run)
            if self.args.mask_content and not run.get('random_init'):
                self.mask_content(run)
            if not self.args.dry_run:
                # the tables so far: a study spread over machines keeps
                # every finished run (--reuse)
                self.write_results()
        date = _now()
        self.write_commands(date)
        if self.args.dry_run:
            print(f'[study] dry run: {len(self.commands)} commands in '
                  f'{osp.join(self.out, "commands.sh")}')
            return dict(commands=self.commands)
        result, rows, table = self.write_results(date)
        if not self.args.no_plot:
            self.plot(rows, osp.join(self.out, 'study.png'))
        print(table)
        print(f'[study] written to {self.out}/study.{{md,json'
              f'{"" if self.args.no_plot else ",png"}}} and commands.sh')
        return result


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
                   'mask_content_test.py on IMAGES images of the probe part, '
                   'default 256)')
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
