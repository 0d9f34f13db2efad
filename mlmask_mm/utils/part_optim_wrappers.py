"""One optimizer per part of a model, in one ``OptimWrapperDict``.

CL-MAE (MAE + masking module) and MLO-MAE (MAE + head + masking network)
train disjoint parameter sets with their own optimizers and schedulers;
their constructors decide which children belong to which part and share
this builder.
"""
import copy
from typing import Dict, Optional

from mmengine.optim import OptimWrapperDict
from torch import nn

from mlmask_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


def build_part_optim_wrappers(cfgs: Dict[str, dict],
                              parts: Dict[str, nn.Module],
                              shared: Optional[dict] = None
                              ) -> OptimWrapperDict:
    """``OptimWrapperDict(key=wrapper of parts[key] built from cfgs[key])``.

    Each ``cfgs[key]`` is an ordinary single-optimizer config (``type``,
    ``optimizer``, ``paramwise_cfg``, optionally its own ``constructor``,
    default ``DefaultOptimWrapperConstructor``); ``shared`` entries
    (e.g. ``type``, ``dtype``) are added to every one.
    """
    wrappers = {}
    for key, part in parts.items():
        cfg = copy.deepcopy(dict(cfgs[key]))
        cfg.update(copy.deepcopy(shared or {}))
        constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
            dict(type=cfg.pop('constructor', 'DefaultOptimWrapperConstructor'),
                 optim_wrapper_cfg=cfg,
                 paramwise_cfg=cfg.pop('paramwise_cfg', None)))
        wrappers[key] = constructor(part)
    return OptimWrapperDict(**wrappers)
