"""Class-folder image dataset that fails early and clearly on bad paths."""
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
        super().__init__(
            data_root=data_root, data_prefix=data_prefix, **kwargs)
        if not kwargs.get('lazy_init', False) and len(self) == 0:
            raise ValueError(
                f'ImageFolder: data_root={data_root!r} holds no images '
                f'with extensions {self.extensions}')
