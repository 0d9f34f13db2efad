"""Load mmengine checkpoints under torch >= 2.6's ``weights_only=True``.

torch 2.6 made ``torch.load(..., weights_only=True)`` the default, and
mmengine 0.10.7 loads with the default.  A checkpoint written by mmengine's
``Runner`` is not only tensors: ``checkpoint['message_hub']`` holds
``HistoryBuffer`` objects (numpy arrays, dtypes and scalars inside), so
resuming or ``load_checkpoint`` failed.  Instead of switching ``weights_only``
off (which runs arbitrary pickled code from untrusted files) we allowlist
exactly the globals mmengine writes.  ``pickletools`` on the ``data.pkl`` of a
Runner checkpoint (``torch.serialization.get_unsafe_globals_in_checkpoint``
agrees) names, besides torch's own rebuild functions, ``OrderedDict`` and
``_codecs.encode`` that torch already allows:

* ``mmengine.logging.history_buffer.HistoryBuffer``
* ``numpy.ndarray``, ``numpy.dtype`` (and, for the ``BUILD`` of a dtype, its
  class ``numpy.dtypes.Float64DType`` ...), ``numpy._core.multiarray.
  _reconstruct`` and ``numpy._core.multiarray.scalar``; the numpy 1.x names
  ``numpy.core.multiarray.*`` are accepted too so that older checkpoints load.
* ``builtins.getattr``: ``HistoryBuffer.__getstate__`` stores its class-level
  ``_statistics_methods`` = ``{'min': HistoryBuffer.min, ...}``; pickle
  protocol 2 (torch.save's) writes a method of a class as
  ``getattr(HistoryBuffer, 'min')``.

``builtins.getattr`` itself must not be allowlisted: ``getattr`` on any
allowed object reaches ``__globals__``, modules and from there anything, i.e.
arbitrary code execution.  torch's ``add_safe_globals`` accepts
``(callable, "module.name")`` entries that bind a name in the pickle to a
callable of our choice, so the name ``builtins.getattr`` is bound to
:func:`history_buffer_getattr`, which resolves only
``getattr(HistoryBuffer, name)`` for the statistics methods mmengine itself
registers (``min``, ``max``, ``current``, ``mean``) and refuses everything
else with an ``UnpicklingError``.  Checkpoints therefore load unchanged (old
ones included) and resume is exact, with nothing sanitised on saving.

Everything not listed here is still refused by torch's safe unpickler (a
pickled custom class, ``os.system`` reduces ...).  ``weights_only`` is never
set to ``False``.
"""
import pickle
from typing import Any, List, Tuple, Union

import numpy as np
import torch

_INSTALLED = False

#: the statistics methods mmengine's HistoryBuffer registers for itself
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as a weights-only checkpoint may use it.

    Only ``getattr(HistoryBuffer, m)`` for ``m`` in
    :data:`HISTORY_BUFFER_METHODS` (what ``HistoryBuffer.__getstate__``
    pickles); anything else raises ``pickle.UnpicklingError`` so that
    ``torch.load`` refuses the file.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and isinstance(name, str) \
            and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) in a weights-only checkpoint: '
        'only HistoryBuffer statistics methods are allowed '
        '(mlmask_mm.utils.safe_checkpoint)')


def _numpy_multiarray():
    core = getattr(np, '_core', None)
    if core is None or not hasattr(core, 'multiarray'):
        core = np.core
    return core.multiarray


def mmengine_checkpoint_types() -> List[Union[object, Tuple[object, str]]]:
    """The globals an mmengine 0.10 Runner checkpoint's pickle names.

    Plain entries are allowlisted under their own ``module.qualname``;
    ``(callable, 'module.name')`` entries bind that name in the pickle to the
    callable.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = _numpy_multiarray()
    types: List[Union[object, Tuple[object, str]]] = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        multiarray._reconstruct,
        multiarray.scalar,
        (history_buffer_getattr, 'builtins.getattr'),
    ]
    # the same functions under numpy 1.x's and numpy 2.x's module names
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        types += [(multiarray._reconstruct, f'{module}._reconstruct'),
                  (multiarray.scalar, f'{module}.scalar')]
    # numpy >= 1.25 builds a dtype as np.dtype(...) then BUILDs an instance
    # of its class (Float64DType ...), which must be allowed too
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType')
            and isinstance(getattr(dtypes, name), type)
        ]
    return types


def install() -> None:
    """Allowlist mmengine's checkpoint globals once (idempotent)."""
    global _INSTALLED
    if _INSTALLED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(mmengine_checkpoint_types())
    _INSTALLED = True
