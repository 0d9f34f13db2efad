from .image_folder import ImageFolder
from .transforms import (SELF_GUIDED_META_KEYS, LoadRegionMask,
                         RecordedRandomResizedCrop)

__all__ = [
    'ImageFolder', 'LoadRegionMask', 'RecordedRandomResizedCrop',
    'SELF_GUIDED_META_KEYS'
]
