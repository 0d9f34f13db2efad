from .hooks import *  # noqa: F401,F403
from .loops import *  # noqa: F401,F403
from .parts import (PartsDataParallel,  # noqa: F401
                    PartsOptimWrapperConstructor)
from .optimizers import *  # noqa: F401,F403
