from .image_folder import ImageFolder
from .transforms import LoadRegionMask

__all__ = ['ImageFolder', 'LoadRegionMask']
