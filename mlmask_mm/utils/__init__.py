from . import backbone_converter, dist, rng_state, safe_checkpoint, setup_env

__all__ = [
    'backbone_converter', 'dist', 'rng_state', 'safe_checkpoint', 'setup_env'
]
