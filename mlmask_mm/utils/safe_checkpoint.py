"""Load mmengine checkpoints under torch >= 2.6's ``weights_only=True``.

torch 2.6 made ``torch.load(..., weights_only=True)`` the default.  mmengine
0.10.7 checkpoints hold a few non-tensor objects (the message hub's
``HistoryBuffer`` with numpy arrays and scalars), so resuming or loading them
fails.  Instead of switching ``weights_only`` off (which would run arbitrary
pickled code from untrusted files) we allowlist exactly the types mmengine
writes; everything else is still refused by torch's safe unpickler.
"""
from typing import List

import numpy as np
import torch

_INSTALLED = False


def mmengine_checkpoint_types() -> List[object]:
    """The classes/functions an mmengine 0.10 checkpoint's pickle names."""
    from mmengine.logging.history_buffer import HistoryBuffer

    numpy_core = getattr(np, '_core', None) or np.core
    types = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        numpy_core.multiarray._reconstruct,
        numpy_core.multiarray.scalar,
    ]
    # numpy >= 1.25 pickles dtypes through their classes (Float64DType ...)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType')
            and isinstance(getattr(dtypes, name), type)
        ]
    return types


def install() -> None:
    """Allowlist mmengine's checkpoint types once (idempotent)."""
    global _INSTALLED
    if _INSTALLED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(mmengine_checkpoint_types())
    _INSTALLED = True
