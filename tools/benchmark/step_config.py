"""A config prepared for the training-step benchmark: loaded (with
``--cfg-options``), its crop size, model class, precision (``amp``) and
per-block compile (see :mod:`benchmark.training_step`)."""
import inspect
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config
from mmengine.registry import MODELS

from mlmask_mm.engine.config_checks import transform_name


def load_config(path: str, options: Optional[dict] = None) -> Config:
    """A config file (``mmpretrain::...`` paths too) with ``options``
    merged as ``--cfg-options`` would."""
    if '::' in path:  # a config of an installed OpenMMLab package
        from mmengine.hub import get_config
        cfg = get_config(path)
    elif not osp.isfile(path):
        raise FileNotFoundError(f'benchmark: config file not found: {path}')
    else:
        cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def crop_size(cfg: Config) -> int:
    """The side of the training images: the last crop/resize of
    ``train_dataloader.dataset.pipeline``, else ``model.backbone.img_size``.
    """
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    while isinstance(dataset, dict) and 'pipeline' not in dataset and \
            isinstance(dataset.get('dataset'), dict):  # dataset wrappers
        dataset = dataset['dataset']
    size = None
    for t in (dataset or {}).get('pipeline', []) or []:
        kind = transform_name(t)
        value = t.get('crop_size') if kind in ('RandomCrop',
                                                'CenterCrop') else None
        if value is None and ('Crop' in kind or kind == 'Resize'):
            value = t.get('scale')
        if value is not None:
            size = value
    if size is None:
        size = cfg.model.get('backbone', {}).get('img_size')
    if size is None:
        raise ValueError(
            'benchmark: cannot tell the crop size: no crop in '
            'train_dataloader.dataset.pipeline and no model.backbone.img_size'
            ' in the config')
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f'benchmark: only square crops, got {size}')
        size = size[0]
    return int(size)


def model_class(cfg: Config):
    scope = cfg.get('default_scope', None)
    with MODELS.switch_scope_and_registry(scope) as registry:
        cls = registry.get(cfg.model['type'])
    if cls is None:
        raise KeyError(f'benchmark: model type {cfg.model["type"]!r} is not '
                       f'registered (default_scope={scope!r})')
    return cls


def accepts(cls, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


def wrapper_cfgs(optim_wrapper: dict) -> List[dict]:
    """The optimizer-wrapper configs of ``optim_wrapper``: itself, or the
    parts of a multi-part one (``dict(constructor=..., mae=dict(...), ...)``).
    """
    if 'optimizer' in optim_wrapper:
        return [optim_wrapper]
    return [v for v in optim_wrapper.values()
            if isinstance(v, dict) and 'optimizer' in v]


def set_precision(cfg: Config, amp: str, device: torch.device) -> str:
    """Apply ``amp`` ('fp32' or 'bf16') to the config; returns how."""
    if amp not in ('fp32', 'bf16'):
        raise ValueError(f"benchmark: --amp must be 'fp32' or 'bf16', got "
                         f'{amp!r}')
    wrappers = wrapper_cfgs(cfg.optim_wrapper)
    if not wrappers:
        raise ValueError('benchmark: the config\'s optim_wrapper has no '
                         f'optimizer: {cfg.optim_wrapper}')
    uses_model_amp = accepts(model_class(cfg), 'amp')
    if uses_model_amp:
        cfg.model['amp'] = 'bf16' if amp == 'bf16' else None
    for w in wrappers:
        if amp == 'bf16' and not uses_model_amp:
            if device.type != 'cuda':
                raise ValueError(
                    'benchmark: --amp bf16 uses AmpOptimWrapper, which '
                    f'mmengine runs on GPUs only (device {device})')
            # a config's own AmpOptimWrapper subclass (BF16AmpOptimWrapper:
            # no loss scaler in bf16) is kept, anything else becomes one
            if not str(w.get('type', '')).endswith('AmpOptimWrapper'):
                w['type'] = 'AmpOptimWrapper'
            w['dtype'] = 'bfloat16'
        elif str(w.get('type', 'OptimWrapper')).endswith('AmpOptimWrapper'):
            w['type'] = 'OptimWrapper'
            w.pop('loss_scale', None)
            w.pop('dtype', None)
    if amp == 'fp32':
        return 'fp32'
    if uses_model_amp:
        return 'model.amp=bf16'
    kinds = sorted({str(w['type']).split('.')[-1] for w in wrappers})
    return '/'.join(kinds) + '(dtype=bfloat16)'


def compile_blocks(model: torch.nn.Module) -> None:
    """Per-block ``torch.compile`` of the encoder and decoder blocks, as
    ``MaskedMAE(compile=True)`` does, for models without that switch."""
    blocks = [getattr(getattr(model, 'backbone', None), 'layers', None),
              getattr(getattr(model, 'neck', None), 'decoder_blocks', None)]
    if blocks[0] is None:
        raise ValueError(f'benchmark: --compile: {type(model).__name__} has '
                         'no backbone.layers to compile')
    for seq in blocks:
        for block in seq or []:
            block.compile()  # in place, like MaskedMAE._compile
