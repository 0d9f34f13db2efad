"""The process's random generators as plain values, and back.

Saved in checkpoints by :class:`~mlmask_mm.engine.hooks.RNGStateHook`, and
put back by hooks that draw random numbers outside the training stream
(mask pictures, Self-Guided start and cache refresh) so that training
draws the same numbers with or without them.
"""
import random
from typing import Any, Dict

import numpy as np
import torch


def get_rng_state() -> Dict[str, Any]:
    """This process's python, numpy, torch and CUDA generator states.

    Only tensors, ints, floats, strings, tuples and ``None`` (what a
    weights-only ``torch.load`` accepts without any allowlist).
    """
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = dict(
        python=random.getstate(),
        numpy=dict(
            name=str(name),
            keys=torch.from_numpy(keys.astype(np.int64)),
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached_gaussian=float(cached)),
        torch=torch.get_rng_state(),
        cuda=None,
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    n = state['numpy']
    np.random.set_state(
        (n['name'], n['keys'].cpu().numpy().astype(np.uint32), n['pos'],
         n['has_gauss'], n['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    cuda = state.get('cuda')
    if cuda and torch.cuda.is_available() \
            and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
