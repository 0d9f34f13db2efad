from .fewshot_folders import FewShotFolders
from .image_folder import ImageFolder
from .labelled_split import LabelledSplit, stratified_split
from .transforms import (SELF_GUIDED_META_KEYS, LoadRegionMask,
                         RecordedRandomResizedCrop)

__all__ = [
    'FewShotFolders', 'ImageFolder', 'LabelledSplit', 'LoadRegionMask',
    'RecordedRandomResizedCrop', 'SELF_GUIDED_META_KEYS', 'stratified_split'
]
