from . import algorithms, maskers  # noqa: F401
from . import losses  # noqa: F401
from .algorithms import *  # noqa: F401,F403
from .maskers import *  # noqa: F401,F403
