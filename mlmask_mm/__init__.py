"""mlmask_mm: learned and informed patch masking for MAE pretraining.

Importing the package registers every component (``custom_imports``) and
makes mmengine's checkpoint loading safe under torch >= 2.6 (see
:mod:`mlmask_mm.utils.safe_checkpoint`).
"""
from .version import __version__  # noqa: F401

try:  # not a pip dependency: mmcv-lite and full mmcv both provide `mmcv`
    import mmcv  # noqa: F401
except ModuleNotFoundError as _e:
    if _e.name != 'mmcv':
        raise
    raise ModuleNotFoundError(
        "mlmask_mm needs mmcv 2.1.0, which `pip install mlmask_mm` does not "
        "install (its two builds cannot both be dependencies): for "
        "pretraining `pip install mmcv-lite==2.1.0` (or `pip install -e "
        "'.[lite]'` in a checkout); for the transfer stack the full mmcv "
        "with compiled ops, `make install-full` (tools/install_mmcv.sh). "
        "See docs/get_started.md", name='mmcv') from None
from .utils import safe_checkpoint as _safe_checkpoint
from . import datasets, engine, evaluation, models  # noqa: F401,E402

_safe_checkpoint.install()

__all__ = ['__version__']
