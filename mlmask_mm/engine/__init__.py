from .hooks import *  # noqa: F401,F403
from .loops import *  # noqa: F401,F403
from .mlo_parts import (MLODataParallel,  # noqa: F401
                        MLOOptimWrapperConstructor)
from .optimizers import *  # noqa: F401,F403
