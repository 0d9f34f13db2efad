"""Class-folder image dataset that fails early and clearly on bad paths."""
import os
import os.path as osp

from mmpretrain.datasets import CustomDataset

from mlmask_mm.registry import DATASETS


@DATASETS.register_module()
class ImageFolder(CustomDataset):
    """mmpretrain's ``CustomDataset`` (``root/class/xxx.jpg``) with checks.

    A missing ``data_root`` or a folder without images raises one error that
    names the setting and the path when the dataset is built, i.e. before the
    first training iteration, instead of an obscure failure later.
    """

    def __init__(self, data_root: str = '', data_prefix='', **kwargs) -> None:
        prefix = data_prefix if isinstance(data_prefix, str) else \
            data_prefix.get('img_path', '')
        folder = osp.join(data_root, prefix) if data_root else prefix
        if not folder or not osp.isdir(folder):
            raise FileNotFoundError(
                f'ImageFolder: data_root={data_root!r} '
                f'(data_prefix={data_prefix!r}) is not a folder: expected '
                'class folders of images at that path')
        extensions = tuple(e.lower() for e in kwargs.get(
            'extensions', ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm',
                           '.tif')))
        if not kwargs.get('ann_file') and not _has_image(folder, extensions):
            raise ValueError(
                f'ImageFolder: data_root={data_root!r} holds no images '
                f'with extensions {extensions}')
        super().__init__(
            data_root=data_root, data_prefix=data_prefix, **kwargs)


def _has_image(folder: str, extensions) -> bool:
    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(extensions) for f in files):
            return True
    return False
