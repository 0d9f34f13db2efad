"""Averaging over the processes of a distributed run."""
from typing import Iterable

import torch
from mmengine.dist import all_reduce_params, get_world_size


def average_over_ranks(tensors: Iterable[torch.Tensor]) -> None:
    """Replace each tensor in place by its mean over the processes.

    The one gradient averaging of the models that take their own optimizer
    steps (CL-MAE, MLO-MAE) under
    :class:`~mlmask_mm.engine.parts.PartsDataParallel`: DDP never syncs
    ``autograd.grad`` results, nor the gradients of a ``backward()`` that
    does not follow a DDP ``forward()``.  A no-op in single-process runs.
    """
    tensors = [t for t in tensors if t is not None]
    if tensors and get_world_size() > 1:
        all_reduce_params(tensors, op='mean')
