"""Stratified, seeded split of a labelled dataset into two disjoint parts.

MLO-MAE (docs/mlo_mae.md) trains its classification head
(level 2) and its masking network (level 3) on labelled data that must come
from the *training* set: a stratified 80/20 split with a fixed seed, so that
level 3 never sees the images used to report results.  :class:`LabelledSplit`
is one part of that split; both parts of the same dataset, ratio and seed are
complementary and disjoint.  :meth:`LabelledSplit.save` writes the file lists
(mmpretrain ``ann_file`` format, ``path label`` per line) and the settings to
the work directory.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Set, Tuple, Union

import numpy as np
from torch.utils.data import Dataset

from mlmask_mm.registry import DATASETS

from .image_folder import NoClassFoldersError

PARTS = ('train', 'val')


def stratified_split(labels: Sequence[int], ratio: float,
                     seed: int) -> Dict[str, List[int]]:
    """Indices of the ``train`` and ``val`` parts, class by class.

    For every class c with n_c samples, a permutation drawn from
    ``numpy.random.default_rng(seed)`` (classes in ascending order) puts
    ``round(ratio · n_c)`` samples, clamped to [1, n_c − 1] when
    n_c ≥ 2, in ``train`` and the rest in ``val``.  Both index lists are
    sorted.
    """
    if not 0 < ratio < 1:
        raise ValueError(f'LabelledSplit: ratio must be in (0, 1) (the '
                         f'fraction of each class in the train part), '
                         f'got {ratio!r}')
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_train = int(round(ratio * len(idx)))
        if len(idx) >= 2:
            n_train = min(max(n_train, 1), len(idx) - 1)
        train.extend(idx[:n_train].tolist())
        val.extend(idx[n_train:].tolist())
    return dict(train=sorted(train), val=sorted(val))


@DATASETS.register_module()
class LabelledSplit(Dataset):
    """One part (``'train'`` or ``'val'``) of a stratified, seeded split.

    Args:
        dataset: a labelled dataset (config or object) whose
            ``get_data_info(i)`` has ``gt_label``, e.g. an ``ImageFolder`` of
            class folders; its pipeline is the one used.
        part: ``'train'`` (MLO-MAE level 2) or ``'val'`` (level 3).
        ratio: fraction of every class that goes to ``'train'``.
        seed: seed of the split (independent of the run's seed).

    Raises one ``ValueError`` when the dataset has no labels (a flat folder
    of images included), or when the part holds fewer than 2 classes.
    """

    def __init__(self, dataset: Union[dict, Dataset], part: str = 'train',
                 ratio: float = 0.8, seed: int = 0) -> None:
        if part not in PARTS:
            raise ValueError(f'LabelledSplit: part must be one of {PARTS}, '
                             f'got {part!r}')
        try:
            self.dataset = DATASETS.build(dataset) if isinstance(
                dataset, dict) else dataset
        except NoClassFoldersError as e:
            raise ValueError(
                f'LabelledSplit: levels 2 and 3 of MLO-MAE train a '
                'classifier and need labelled images (one folder per '
                'class), got a flat folder: ' + str(e).split(': ', 1)[1]
                + ' (MLO-MAE cannot pretrain on unlabelled images; MAE, '
                'Self-Guided MAE and CL-MAE can)') from e
        self.part, self.ratio, self.seed = part, float(ratio), int(seed)
        self.labels = _labels(self.dataset)
        self.splits = stratified_split(self.labels, self.ratio, self.seed)
        self.indices = self.splits[part]
        classes = sorted({self.labels[i] for i in self.indices})
        if len(classes) < 2:
            raise ValueError(
                f'LabelledSplit: the {part!r} part of '
                f'{_describe(self.dataset)} (ratio={ratio}, seed={seed}, '
                f'{len(self.labels)} labelled samples) has {len(classes)} '
                'class(es); the downstream classification of MLO-MAE needs '
                'at least 2')

    @property
    def metainfo(self) -> dict:
        return getattr(self.dataset, 'metainfo', {})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int):
        return self.dataset[self.indices[idx]]

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self.indices[idx])

    def file_paths(self, part: str = None) -> List[str]:
        """Image paths of a part (this one by default); [] if not files."""
        indices = self.splits[part or self.part]
        paths = [self.dataset.get_data_info(i).get('img_path')
                 for i in indices]
        return [] if None in paths else paths

    def save(self, folder: str) -> str:
        """Write ``train.txt``, ``val.txt`` (``path label``) and
        ``split.json`` (ratio, seed, per-class counts) into ``folder``."""
        os.makedirs(folder, exist_ok=True)
        root = getattr(self.dataset, 'img_prefix', '') or ''
        for part in PARTS:
            with open(osp.join(folder, f'{part}.txt'), 'w') as f:
                for i in self.splits[part]:
                    path = self.dataset.get_data_info(i).get('img_path', i)
                    if root and isinstance(path, str):
                        path = osp.relpath(path, root)
                    f.write(f'{path} {self.labels[i]}\n')
        counts = {
            part: {int(c): int(n) for c, n in zip(*np.unique(
                [self.labels[i] for i in self.splits[part]],
                return_counts=True))}
            for part in PARTS
        }
        info = dict(ratio=self.ratio, seed=self.seed, root=root,
                    dataset=_describe(self.dataset),
                    num_samples={p: len(self.splits[p]) for p in PARTS},
                    per_class=counts)
        with open(osp.join(folder, 'split.json'), 'w') as f:
            json.dump(info, f, indent=1)
        return folder


def sample_keys(dataset, name: str = 'dataset') -> Set[Tuple[str, str]]:
    """What identifies each sample, for overlap checks between datasets.

    ``('path', realpath)`` when ``get_data_info(i)`` has an ``img_path``
    (folders, annotation files); ``('content', sha1 of the pixels, shape
    and dtype)`` when it holds the image in memory under ``img`` (e.g.
    mmpretrain's CIFAR10 / CIFAR100).  Raises ``ValueError`` when a sample
    has neither: its overlap with another dataset cannot be verified.
    """
    if not hasattr(dataset, 'get_data_info'):
        raise ValueError(
            f'cannot verify the overlap of {name} ({_describe(dataset)}) '
            'with the labelled data: it has no get_data_info(); use a '
            'dataset of files or of in-memory images (mmpretrain datasets)')
    keys = set()
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        path = info.get('img_path')
        if path is not None:
            keys.add(('path', osp.realpath(path)))
            continue
        img = info.get('img')
        if img is None:
            raise ValueError(
                f'cannot verify the overlap of {name} ({_describe(dataset)})'
                f' with the labelled data: sample {i} has neither img_path '
                'nor img; refusing to start rather than skip the check')
        keys.add(content_key(img))
    return keys


def content_key(img) -> Tuple[str, str]:
    """``('content', sha1)`` of an H x W x C image array (pixels, shape and
    dtype)."""
    arr = np.ascontiguousarray(np.asarray(img))
    digest = hashlib.sha1(arr.tobytes())
    digest.update(f'{arr.shape}{arr.dtype}'.encode())
    return 'content', digest.hexdigest()


def file_content_keys(keys: Set[Tuple[str, str]],
                      name: str = 'dataset') -> Set[Tuple[str, str]]:
    """The ``('path', ...)`` keys of :func:`sample_keys` as content keys:
    each file decoded to RGB uint8 (H x W x 3, the layout of mmpretrain's
    in-memory CIFAR10 / CIFAR100), to compare files with in-memory images
    (e.g. a labelled split of image files against the official CIFAR test
    set).  Content keys pass through unchanged."""
    import mmcv
    out = set()
    for kind, value in keys:
        if kind != 'path':
            out.add((kind, value))
            continue
        img = mmcv.imread(value, channel_order='rgb')
        if img is None:
            raise ValueError(f'cannot read {value!r} of {name} to compare '
                             'it by content with in-memory images')
        out.add(content_key(img))
    return out


def _labels(dataset) -> List[int]:
    labels = []
    for i in range(len(dataset)):
        label = dataset.get_data_info(i).get('gt_label')
        if label is None:
            raise ValueError(
                f'LabelledSplit: {_describe(dataset)} has no labels (sample '
                f'{i} has no gt_label): levels 2 and 3 of MLO-MAE need a '
                'labelled dataset, e.g. class folders with with_label=True '
                '(MLO-MAE cannot pretrain on unlabelled images; MAE, '
                'Self-Guided MAE and CL-MAE can)')
        labels.append(int(label))
    if not labels:
        raise ValueError(f'LabelledSplit: {_describe(dataset)} is empty')
    return labels


def _describe(dataset) -> str:
    root = getattr(dataset, 'data_root', None)
    prefix = getattr(dataset, 'img_prefix', None)
    where = prefix or root
    return f'{type(dataset).__name__}({where!r})' if where else \
        type(dataset).__name__
