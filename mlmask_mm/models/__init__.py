from . import algorithms, backbones, heads, losses, maskers  # noqa: F401
from . import necks, utils  # noqa: F401
from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .maskers import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
