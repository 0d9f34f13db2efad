from . import backbone_converter, safe_checkpoint

__all__ = ['backbone_converter', 'safe_checkpoint']
