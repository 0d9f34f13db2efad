"""Training a model in parts: one optimizer per part, one distributed wrapper.

CL-MAE (MAE + masking module) and MLO-MAE (MAE + downstream head + masking
network) train disjoint parameter sets, each with its own optimizer and
schedulers, inside their own ``train_step`` / ``outer_step``.  The model
declares its parts; this module builds the optimizers and wraps the model
for distributed runs (docs/cl_mae.md, docs/mlo_mae.md):

* :class:`PartsOptimWrapperConstructor`: ``optim_wrapper = dict(constructor=
  'PartsOptimWrapperConstructor', <part>=dict(...), ...)`` →
  ``OptimWrapperDict(<part>=...)``;
* :class:`PartsDataParallel`: ``model_wrapper_cfg = dict(type=
  'PartsDataParallel')``; the model's own step averages its gradients with
  :func:`mlmask_mm.utils.dist.average_over_ranks` before each optimizer step
  (the wrapper checks that the processes' parameters agree after the first
  step and every ``sync_check_interval`` steps, and stops the run if not).

A model trained in parts declares, as class attributes::

    optim_parts = dict(masker=('masker', ))  # part -> its children
    default_optim_part = 'mae'               # every other child

(read by :mod:`mlmask_mm.models.utils.parts`) and may define
``check_optim_part(part, wrapper_cfg)`` (a classmethod) to refuse an
optimizer wrapper it cannot train with.
"""
import copy
from typing import List, Optional

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, broadcast, get_world_size
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODEL_WRAPPERS as ENGINE_MODEL_WRAPPERS

from mlmask_mm.models.utils.parts import split_into_parts
from mlmask_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS

# wrapper settings given once at the top level apply to every part
# (``tools/train.py --amp`` sets optim_wrapper.type='AmpOptimWrapper')
SHARED_KEYS = ('type', 'loss_scale', 'dtype')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PartsOptimWrapperConstructor:
    """Build ``OptimWrapperDict(<part>=...)``, one optimizer per model part.

    ``optim_wrapper = dict(constructor='PartsOptimWrapperConstructor',
    mae=dict(type='OptimWrapper', optimizer=..., paramwise_cfg=...),
    masker=dict(...))``: one entry per part the model declares (exactly
    those), each an ordinary single-optimizer config built by its own
    ``constructor`` (default ``DefaultOptimWrapperConstructor``).  ``type``,
    ``loss_scale`` and ``dtype`` at the top level apply to every part.
    The model's ``check_optim_part(part, cfg)``, if it has one, sees each
    part's final config first.
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        if paramwise_cfg:
            raise ValueError(
                'PartsOptimWrapperConstructor: put paramwise_cfg inside '
                'each part (optim_wrapper.<part>.paramwise_cfg)')
        cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        shared = {k: cfg.pop(k) for k in SHARED_KEYS if k in cfg}
        self.cfgs = {part: {**dict(part_cfg), **shared}
                     for part, part_cfg in cfg.items()}

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        model = getattr(model, 'module', model)
        parts = split_into_parts(model)
        if set(self.cfgs) != set(parts):
            raise ValueError(
                f'optim_wrapper needs exactly the keys {sorted(parts)} (one '
                f'optimizer per part of {type(model).__name__}), got '
                f'{sorted(self.cfgs)}')
        check = getattr(model, 'check_optim_part', None)
        if check is not None:  # every part before any optimizer is built
            for part in parts:
                check(part, copy.deepcopy(self.cfgs[part]))
        wrappers = {}
        for part, module in parts.items():
            cfg = copy.deepcopy(self.cfgs[part])
            constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
                dict(type=cfg.pop('constructor',
                                  'DefaultOptimWrapperConstructor'),
                     optim_wrapper_cfg=cfg,
                     paramwise_cfg=cfg.pop('paramwise_cfg', None)))
            wrappers[part] = constructor(module)
        return OptimWrapperDict(**wrappers)


# in mmengine's root registry: Runner.wrap_model looks the wrapper type up
# there, and the root only searches its direct children (mmpretrain), not
# this package's registry below them
@ENGINE_MODEL_WRAPPERS.register_module()
class PartsDataParallel(nn.Module):
    """Distributed wrapper of a model that takes its own optimizer steps.

    ``MMDistributedDataParallel`` trains through ``forward(mode='loss')``
    and syncs only the gradients of a ``backward()`` that follows its own
    ``forward()`` (never ``autograd.grad`` results); CL-MAE's two steps and
    MLO-MAE's three levels need their own ``train_step`` / ``outer_step``.
    This wrapper starts every process from rank 0's parameters and buffers,
    exposes the model as ``.module`` and hands it ``train_step`` /
    ``val_step`` / ``test_step``.  It does not touch gradients: **the model
    averages them over the processes**
    (:func:`~mlmask_mm.utils.dist.average_over_ranks`) before each
    optimizer step.  A model that does not would train every process on its
    own gradients, so after its first ``train_step`` and every
    ``sync_check_interval`` steps the wrapper compares the parameters of
    all processes (two float64 sums per parameter, one all-reduce) and
    stops the run with one error naming the parameters that differ.
    ``sync_check_interval=0`` turns the check off.  DDP's arguments
    (``device_ids``, ``broadcast_buffers``, ...) are accepted and ignored.
    """

    def __init__(self, module: nn.Module, sync_check_interval: int = 100,
                 **ddp_kwargs) -> None:
        super().__init__()
        if not isinstance(sync_check_interval, int) or \
                sync_check_interval < 0:
            raise ValueError(
                'PartsDataParallel: sync_check_interval must be an integer '
                f'>= 0 (0: no check), got {sync_check_interval!r}')
        self.module = module
        self.sync_check_interval = sync_check_interval
        self._steps = 0
        tensors: List = list(module.parameters()) + list(module.buffers())
        for tensor in tensors:
            broadcast(tensor.data, src=0)

    def train_step(self, data, optim_wrapper):
        out = self.module.train_step(data, optim_wrapper)
        self._steps += 1
        n = self.sync_check_interval
        if n and (self._steps == 1 or self._steps % n == 0):
            check_parameters_in_sync(self.module, self._steps)
        return out

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def check_parameters_in_sync(model: nn.Module, step: int) -> None:
    """Raise one ``RuntimeError`` on every process unless all processes hold
    the same parameters (sum and sum of squares of each, in float64, equal
    on all ranks).  A no-op in a single-process run."""
    if get_world_size() < 2:
        return
    named = [(k, p) for k, p in model.named_parameters()]
    if not named:
        return
    stats = torch.stack([
        torch.stack([p.detach().double().sum(),
                     p.detach().double().square().sum()])
        for _, p in named
    ])
    high, low = stats.clone(), stats.clone()
    all_reduce(high, op='max')
    all_reduce(low, op='min')
    differ = [k for (k, _), h, lo in zip(named, high, low)
              if not torch.equal(h, lo)]
    if differ:
        shown = ', '.join(differ[:5]) + (
            f' and {len(differ) - 5} more' if len(differ) > 5 else '')
        raise RuntimeError(
            f'PartsDataParallel: after training step {step} the processes '
            f'hold different values of {len(differ)} parameter(s) of '
            f'{type(model).__name__} ({shown}). PartsDataParallel does not '
            'synchronise gradients: a model that takes its own optimizer '
            'steps must average them over the processes with '
            'mlmask_mm.utils.dist.average_over_ranks(p.grad for p in '
            'params) before each step (as CLMAE.train_step and '
            'MLOMAE.outer_step do)')
