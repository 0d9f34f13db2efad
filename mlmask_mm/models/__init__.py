from . import algorithms, backbones, maskers  # noqa: F401
from . import losses, necks  # noqa: F401
from .necks import *  # noqa: F401,F403
from .algorithms import *  # noqa: F401,F403
from .maskers import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
