"""Refuse to train from a pretrained checkpoint that does not fit the model.

mmengine's ``Pretrained`` init (and mmseg's ``MAE`` backbone, which loads by
itself) load with ``strict=False``: a wrong file (the unconverted
pretraining checkpoint, a ViT of another width, a detector checkpoint)
leaves the backbone at its random init with a log warning, and the run
trains on.  This hook compares, before the first iteration, the checkpoint
named by the module's ``init_cfg`` with the module, the way those loaders
read it (``state_dict`` of the file, ``module.`` stripped, then the
``prefix`` kept and stripped), and stops with one error naming the file and
the keys when

* a parameter of the module is not in the checkpoint, unless it is one of
  ``new_params`` (parameters the transfer protocol adds, which start from
  their init: e.g. mmseg MAE's layer scale and relative position tables);
* a key of the checkpoint is not in the module, unless one of
  ``ignored_keys``;
* a tensor's shape differs, except the trailing (channel) size of position
  tables the backbones interpolate when loading (``pos_embed``, relative
  position tables).

The parameters that start from their init are logged.  A module without
``init_cfg`` (training from scratch, chosen) is logged, not refused; a
``Pretrained`` init without a checkpoint is refused.  Nothing is checked
when the runner has resumed or loaded ``load_from`` (those weights replace
the init).
"""
import os.path as osp
import re
from typing import Dict, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mlmask_mm.registry import HOOKS
from mlmask_mm.utils import safe_checkpoint

#: tables the backbones resize when the grid differs: only their last
#: dimension (channels / heads) must match
_RESIZED = re.compile(r'(^|\.)(pos_embed|relative_position_bias_table|'
                      r'rel_pos_[hw])$')


class PretrainedMismatchError(RuntimeError):
    """The pretrained checkpoint does not cover the module."""


def read_pretrained(path: str, prefix: str = None) -> Dict[str, torch.Tensor]:
    """The tensors the ``Pretrained`` init would load from ``path``."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'pretrained checkpoint {path!r} does not '
                                'exist')
    safe_checkpoint.install()
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise PretrainedMismatchError(f'{path} holds no state dict')
    out = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        key = re.sub(r'^module\.', '', key)
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
        out[key] = value
    return out


def _short(keys, limit=8):
    keys = sorted(keys)
    more = f' ... ({len(keys)} in all)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def check_pretrained(module: torch.nn.Module, path: str, prefix: str = None,
                     new_params: Sequence[str] = (),
                     ignored_keys: Sequence[str] = (),
                     name: str = 'backbone') -> list:
    """Raise :class:`PretrainedMismatchError` unless ``path`` covers
    ``module`` (see the module docstring); the names of the parameters
    that start from their init."""
    ckpt = read_pretrained(path, prefix)
    params = dict(module.named_parameters())
    state = module.state_dict()
    new = [re.compile(p + r'$') for p in new_params]
    ignored = [re.compile(p + r'$') for p in ignored_keys]
    at_init = sorted(k for k in params if k not in ckpt)
    missing = [k for k in at_init if not any(p.match(k) for p in new)]
    unexpected = [k for k in ckpt if k not in state and not any(
        p.match(k) for p in ignored)]
    shapes = [
        f'{k} {tuple(ckpt[k].shape)} vs {tuple(v.shape)}'
        for k, v in state.items() if k in ckpt
        and tuple(ckpt[k].shape) != tuple(v.shape)
        and not (_RESIZED.search(k) and ckpt[k].shape[-1:] == v.shape[-1:])]
    where = f' (prefix {prefix!r})' if prefix else ''
    problems = []
    if missing:
        problems.append(f'{len(missing)} of the {len(params)} parameters of '
                        f'model.{name} are not in it: {_short(missing)}')
    if unexpected:
        problems.append(f'{len(unexpected)} of its keys are not in '
                        f'model.{name}: {_short(unexpected)}')
    if shapes:
        problems.append(f'{len(shapes)} shapes differ (checkpoint vs model): '
                        f'{_short(shapes, 4)}')
    if problems:
        raise PretrainedMismatchError(
            f'pretrained checkpoint {path}{where} does not fit '
            f'model.{name}: ' + '; '.join(problems) +
            '. Convert the pretraining checkpoint for this config with '
            'tools/model_converters/mlmask2backbone.py --target ... '
            '(docs/transfer.md)')
    return at_init


@HOOKS.register_module()
class StrictPretrainedHook(Hook):
    """Before the first iteration: the checkpoint of ``model.<module>``'s
    ``Pretrained`` init covers it (see the module docstring).

    Args:
        module: attribute of the model whose ``init_cfg`` names the
            checkpoint (``'backbone'``).
        new_params: regular expressions (full match) of parameters the
            checkpoint may lack; they start from their init and are logged.
        ignored_keys: regular expressions of checkpoint keys the module does
            not take (e.g. a pretraining encoder's final norm).
    """

    priority = 'VERY_HIGH'

    def __init__(self, module: str = 'backbone',
                 new_params: Sequence[str] = (),
                 ignored_keys: Sequence[str] = ()) -> None:
        self.module = module
        self.new_params = tuple(new_params)
        self.ignored_keys = tuple(ignored_keys)
        for pattern in self.new_params + self.ignored_keys:
            re.compile(pattern)

    def before_train(self, runner) -> None:
        if getattr(runner, '_has_loaded', False):
            runner.logger.info(
                'StrictPretrainedHook: weights resumed or loaded from '
                'load_from replace the pretrained init: not checked')
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        module = getattr(model, self.module, None)
        if module is None:
            raise AttributeError(
                f'StrictPretrainedHook: the model has no {self.module!r}')
        init = getattr(module, 'init_cfg', None)
        if init is None:
            runner.logger.info(
                f'StrictPretrainedHook: model.{self.module} has no init_cfg: '
                'it trains from its random initialisation')
            return
        if not (isinstance(init, dict) and init.get('type') == 'Pretrained'
                and init.get('checkpoint')):
            raise PretrainedMismatchError(
                f'StrictPretrainedHook: model.{self.module} has no '
                f'Pretrained init with a checkpoint (init_cfg={init}): set '
                'the checkpoint, or init_cfg=None to train from scratch')
        at_init = check_pretrained(
            module, init['checkpoint'], init.get('prefix'), self.new_params,
            self.ignored_keys, self.module)
        runner.logger.info(
            f'StrictPretrainedHook: {init["checkpoint"]} covers '
            f'model.{self.module}; {len(at_init)} parameters start from '
            f'their init: {_short(at_init, 50) or "none"}')
