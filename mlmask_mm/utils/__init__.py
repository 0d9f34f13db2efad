from . import (backbone_converter, checkpoint_files, dist, rng_state,
               safe_checkpoint, setup_env)

__all__ = [
    'backbone_converter', 'checkpoint_files', 'dist', 'rng_state',
    'safe_checkpoint', 'setup_env'
]
