"""mlmask_mm: learned and informed patch masking for MAE pretraining.

Importing the package registers every component (``custom_imports``) and
makes mmengine's checkpoint loading safe under torch >= 2.6 (see
:mod:`mlmask_mm.utils.safe_checkpoint`).
"""
from .version import __version__  # noqa: F401
from .utils import safe_checkpoint as _safe_checkpoint
from . import datasets, engine, evaluation, models  # noqa: F401,E402

_safe_checkpoint.install()

__all__ = ['__version__']
