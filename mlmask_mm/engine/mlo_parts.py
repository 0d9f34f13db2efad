"""MLO-MAE's three optimizers and its distributed wrapper.

MLO-MAE (design note, "Parts") trains three parameter sets at three levels:
θ1 = the MAE (encoder + decoder), θ2 = the downstream head, φ = the masking
network.  :class:`MLOOptimWrapperConstructor` gives each its own optimizer in
one ``OptimWrapperDict(mae=..., head=..., masker=...)``;
:class:`MLODataParallel` is the distributed wrapper under which
``MLOMAE.outer_step`` averages every gradient itself (DDP only syncs
gradients of ``backward()`` after a DDP ``forward()``, and ``autograd.grad``
results never).
"""
import copy
from typing import Dict, List, Optional, Sequence

import torch.nn as nn
from mmengine.dist import broadcast
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODEL_WRAPPERS as ENGINE_MODEL_WRAPPERS

from mlmask_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mlmask_mm.utils.part_optim_wrappers import build_part_optim_wrappers

MLO_OPTIM_KEYS = ('mae', 'head', 'masker')
SHARED_KEYS = ('type', 'loss_scale', 'dtype')
DEFAULT_PARTS = dict(head=('downstream_head', ), masker=('masker', ))


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MLOOptimWrapperConstructor:
    """Build ``OptimWrapperDict(mae=..., head=..., masker=...)``.

    ``optim_wrapper = dict(constructor='MLOOptimWrapperConstructor',
    mae=dict(...), head=dict(...), masker=dict(...))``: each entry is an
    ordinary single-optimizer config (``type``, ``optimizer``,
    ``paramwise_cfg``, optionally its own ``constructor``).  The model's
    children named in ``parts`` (default: ``downstream_head`` → ``head``,
    ``masker`` → ``masker``) go to those optimizers, every other child to
    ``mae``; parameter names stay the model's, so ``paramwise_cfg`` keys
    match as usual.  Wrapper settings at the top level (``type``,
    ``loss_scale``, ``dtype``) apply to all three.

    Mixed precision is ``model.amp='bf16'`` (autocast inside
    ``MLOMAE.outer_step``, finite differences in fp32): an
    ``AmpOptimWrapper`` (e.g. ``tools/train.py --amp``) is refused, since
    its loss scaling would unscale the masking network's hypergradient,
    which no scaled loss produced.
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        self.parts: Dict[str, Sequence[str]] = cfg.pop('parts', DEFAULT_PARTS)
        self.shared = {k: cfg.pop(k) for k in SHARED_KEYS if k in cfg}
        if paramwise_cfg:
            raise ValueError(
                'MLOOptimWrapperConstructor: put paramwise_cfg inside '
                'optim_wrapper.mae / .head / .masker')
        if set(cfg) != set(MLO_OPTIM_KEYS):
            raise ValueError(
                f'optim_wrapper needs exactly the keys {MLO_OPTIM_KEYS} (one '
                f'optimizer per level), got {sorted(cfg)}')
        self.cfgs = cfg
        for key in MLO_OPTIM_KEYS:
            wrapper = {**cfg[key], **self.shared}.get('type', 'OptimWrapper')
            if 'Amp' in str(wrapper):
                raise ValueError(
                    f'optim_wrapper.{key}: type={wrapper!r} is not supported '
                    "by MLO-MAE; use model.amp='bf16' for mixed precision "
                    '(AmpOptimWrapper would unscale the hypergradient)')

    def split(self, model: nn.Module) -> Dict[str, nn.Module]:
        """The model's children grouped by optimizer (empty groups fail)."""
        owner = {child: key for key, children in self.parts.items()
                 for child in children}
        parts = {key: nn.Module() for key in MLO_OPTIM_KEYS}
        for name, child in model.named_children():
            parts[owner.get(name, 'mae')].add_module(name, child)
        for key, part in parts.items():
            if not any(p.requires_grad for p in part.parameters()):
                raise ValueError(
                    f'MLOOptimWrapperConstructor: no trainable parameter for '
                    f'optim_wrapper.{key} in {type(model).__name__} (its '
                    f'children: {[n for n, _ in model.named_children()]}, '
                    f'parts={self.parts})')
        return parts

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        if hasattr(model, 'module'):
            model = model.module
        return build_part_optim_wrappers(self.cfgs, self.split(model),
                                         self.shared)


# in mmengine's root registry: Runner.wrap_model looks the wrapper type up
# there, and the root only searches its direct children (mmpretrain)
@ENGINE_MODEL_WRAPPERS.register_module()
class MLODataParallel(nn.Module):
    """Distributed wrapper of ``MLOMAE`` (``model_wrapper_cfg``).

    Starts every process from rank 0's parameters and buffers and exposes
    the model as ``.module``; :class:`~mlmask_mm.engine.MLOTrainLoop` calls
    ``module.outer_step``, which all-reduces its gradients before each of its
    three optimizer steps.  DDP's arguments (``device_ids``,
    ``broadcast_buffers``, ...) are accepted and ignored.
    """

    def __init__(self, module: nn.Module, **ddp_kwargs) -> None:
        super().__init__()
        self.module = module
        tensors: List = list(module.parameters()) + list(module.buffers())
        for tensor in tensors:
            broadcast(tensor.data, src=0)

    def train_step(self, data, optim_wrapper):
        return self.module.train_step(data, optim_wrapper)

    def val_step(self, data):
        return self.module.val_step(data)

    def test_step(self, data):
        return self.module.test_step(data)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
