from . import backbone_converter, dist, safe_checkpoint

__all__ = ['backbone_converter', 'dist', 'safe_checkpoint']
