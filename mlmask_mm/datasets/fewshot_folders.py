"""The few-shot layout ``DIR/<support>/<class>/*`` + ``DIR/<query>/<class>/*``
as one dataset, for :class:`~mlmask_mm.evaluation.FewShotLinearProbe`."""
from mmpretrain.datasets import BaseDataset

from mlmask_mm.registry import DATASETS

from .image_folder import ImageFolder


@DATASETS.register_module()
class FewShotFolders(BaseDataset):
    """The support split's images first, then the query split's.

    ``metainfo['num_support']`` is the number of support images, so a sample
    with ``sample_idx < num_support`` belongs to the support pool (the
    training images the n-shot classifiers are drawn from) and every other
    sample to the query set they are scored on.  Both splits must have the
    same class folders (one error naming the differences otherwise).

    Args:
        data_root (str): ``DIR`` (the layout of
            ``tools/analysis_tools/fewshot.py --data``).
        support (str): the support split's folder. Defaults to ``'train'``.
        query (str): the query split's folder. Defaults to ``'test'``.
        pipeline (list): transforms of every image (test-time: resize, crop,
            ``PackInputs``).
    """

    def __init__(self, data_root: str, support: str = 'train',
                 query: str = 'test', pipeline=(), **kwargs) -> None:
        self.splits = (support, query)
        super().__init__(ann_file='', data_root=data_root, pipeline=pipeline,
                         test_mode=True, **kwargs)

    def load_data_list(self):
        folders = [ImageFolder(data_root=self.data_root, data_prefix=split,
                               test_mode=True) for split in self.splits]
        classes = [list(f.CLASSES) for f in folders]
        if classes[0] != classes[1]:
            (a, b), (ca, cb) = self.splits, map(set, classes)
            raise ValueError(
                f'FewShotFolders: {self.data_root}/{a} and '
                f'{self.data_root}/{b} have different classes: only in {a} '
                f'{sorted(ca - cb)}, only in {b} {sorted(cb - ca)}')
        self._metainfo.update(classes=tuple(classes[0]),
                              num_support=len(folders[0]))
        return [dict(img_path=info['img_path'], gt_label=info['gt_label'])
                for f in folders
                for info in (f.get_data_info(i) for i in range(len(f)))]
