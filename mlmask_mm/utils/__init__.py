from . import (backbone_converter, checkpoint_files, part_optim_wrappers,
               safe_checkpoint)

__all__ = [
    'backbone_converter', 'checkpoint_files', 'part_optim_wrappers',
    'safe_checkpoint'
]
