"""The study's data: class-folder trees of the pretraining, probe-fitting
and reported parts (``--data ROOT``, docs/study.md)."""
import os
import os.path as osp
from typing import Dict, Optional

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')


def class_folders(root: str, split: str) -> Dict[str, int]:
    """``{class: number of images}`` of ``root/split/<class>/``."""
    folder = osp.join(root, split)
    if not osp.isdir(folder):
        raise FileNotFoundError(
            f'{folder} is not a folder: --data ROOT needs ROOT/{split}/'
            '<class>/ image folders')
    counts = {}
    for c in sorted(os.listdir(folder)):
        if osp.isdir(osp.join(folder, c)):
            counts[c] = sum(1 for f in os.listdir(osp.join(folder, c))
                            if f.lower().endswith(IMAGE_EXTENSIONS))
    if not counts:
        raise ValueError(f'{folder} holds no class folders')
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise ValueError(f'{folder}: class folders without images: {empty}')
    return counts


def check_data(root: str, train_split: str, val_split: str,
               probe_split: Optional[str] = None) -> Dict:
    """The study's data: class-folder trees with the same classes, the
    pretraining part, the reported part and the part both probes are fitted
    on (default: the pretraining part), which must not share an image
    (resolved path) with the reported part."""
    root = osp.abspath(root)
    probe_split = probe_split or train_split
    if val_split in (train_split, probe_split):
        raise ValueError(f'--val-split {val_split!r} is also the train or '
                         'probe split: the reported part must be held out')
    train = class_folders(root, train_split)
    val = class_folders(root, val_split)
    probe = class_folders(root, probe_split)
    for name, other in ((val_split, val), (probe_split, probe)):
        if sorted(train) != sorted(other):
            raise ValueError(
                f'{osp.join(root, train_split)} and {osp.join(root, name)} '
                f'have different classes: {sorted(set(train) ^ set(other))}')
    if probe_split != train_split:
        shared = _real_files(root, probe_split) & _real_files(root, val_split)
        if shared:
            raise ValueError(
                f'--probe-split {probe_split!r} and --val-split '
                f'{val_split!r} share {len(shared)} images, e.g. '
                f'{sorted(shared)[0]}')
    return dict(root=root, train_split=train_split, val_split=val_split,
                probe_split=probe_split, classes=sorted(train),
                num_train=sum(train.values()), num_val=sum(val.values()),
                num_probe=sum(probe.values()))


def _real_files(root: str, split: str) -> set:
    """Resolved paths of the images of ROOT/split/<class>/ (links
    followed)."""
    folder = osp.join(root, split)
    return {osp.realpath(osp.join(folder, c, f))
            for c in os.listdir(folder) if osp.isdir(osp.join(folder, c))
            for f in os.listdir(osp.join(folder, c))}
