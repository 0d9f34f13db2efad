from . import backbone_converter, part_optim_wrappers, safe_checkpoint

__all__ = ['backbone_converter', 'part_optim_wrappers', 'safe_checkpoint']
