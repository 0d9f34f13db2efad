from .image_folder import ImageFolder
from .labelled_split import LabelledSplit, stratified_split
from .transforms import LoadRegionMask

__all__ = ['ImageFolder', 'LabelledSplit', 'LoadRegionMask', 'stratified_split']
