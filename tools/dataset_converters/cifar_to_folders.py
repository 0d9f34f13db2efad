"""Convert the official CIFAR-10 / CIFAR-100 python archives into class folders.

Input: the archive as downloaded from https://www.cs.toronto.edu/~kriz/cifar.html,
``cifar-10-python.tar.gz`` (``cifar-10-batches-py/data_batch_1..5``,
``test_batch``, ``batches.meta``) or ``cifar-100-python.tar.gz``
(``cifar-100-python/train``, ``test``, ``meta``).  Each batch is a pickled dict
whose ``data`` rows hold one 32x32 image as 1,024 red, 1,024 green, then
1,024 blue bytes, row-major.

Output (lossless PNG), the layout every CIFAR config of this project reads::

    ROOT/train/<class>/0000.png ...   the training images of each class, in
                                      the order of the archive's batches
    ROOT/test/<class>/0000.png ...    the official test set
    ROOT/meta/train.txt               files 0000-4499 of each class (CIFAR-10;
    ROOT/meta/val.txt                 the last --val-fraction of each class is
                                      `val`: 4500-4999), `<class>/<file> <label>`
    ROOT/meta/test.txt                the test folders, same format

Labels are the archive's label indices; its class names (``label_names``,
CIFAR-100 ``fine_label_names`` or, with ``--labels coarse``, the 20
superclasses) name the folders.  ``val`` is held out: never pretrain on it,
report on it.  Example::

    python tools/dataset_converters/cifar_to_folders.py cifar-10-python.tar.gz data/cifar10
    python tools/dataset_converters/cifar_to_folders.py cifar-100-python.tar.gz data/cifar100

The archive is read in place (nothing else is extracted); its batches are
Python pickles, so convert only archives you trust (the official ones).
"""
import argparse
import io
import os
import os.path as osp
import pickle
import sys
import tarfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

#: archive layout: top folder -> (training members, test members, meta
#: member, class-name key per --labels, label key per --labels)
FORMATS = {
    'cifar-10-batches-py': dict(
        train=[f'data_batch_{i}' for i in range(1, 6)], test=['test_batch'],
        meta='batches.meta', names=dict(fine=b'label_names'),
        labels=dict(fine=b'labels')),
    'cifar-100-python': dict(
        train=['train'], test=['test'], meta='meta',
        names=dict(fine=b'fine_label_names', coarse=b'coarse_label_names'),
        labels=dict(fine=b'fine_labels', coarse=b'coarse_labels')),
}
SIDE = 32


def _load(tar: tarfile.TarFile, name: str, archive: str) -> dict:
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise ValueError(f'{archive}: member {name} is missing (not an '
                         'official CIFAR python archive?)')
    return pickle.load(io.BytesIO(member.read()), encoding='bytes')


def read_archive(archive: str, labels: str = 'fine'
                 ) -> Tuple[List[str], Dict[str, Tuple[np.ndarray, list]]]:
    """``(class names, {'train' | 'test': (N x 32 x 32 x 3 uint8, labels)})``
    of an official CIFAR python archive."""
    if not osp.isfile(archive):
        raise FileNotFoundError(f'{archive} does not exist')
    with tarfile.open(archive, 'r:*') as tar:
        tops = {n.split('/')[0] for n in tar.getnames()}
        found = [t for t in FORMATS if t in tops]
        if not found:
            raise ValueError(
                f'{archive} holds neither cifar-10-batches-py/ nor '
                f'cifar-100-python/ (top-level entries: {sorted(tops)[:5]})')
        top = found[0]
        fmt = FORMATS[top]
        if labels not in fmt['names']:
            raise ValueError(f'--labels {labels}: {top} has only '
                             f'{sorted(fmt["names"])} labels')
        meta = _load(tar, f'{top}/{fmt["meta"]}', archive)
        names = [n.decode() for n in meta[fmt['names'][labels]]]
        splits = {}
        for split in ('train', 'test'):
            images, targets = [], []
            for member in fmt[split]:
                batch = _load(tar, f'{top}/{member}', archive)
                data = np.asarray(batch[b'data'], dtype=np.uint8)
                if data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
                    raise ValueError(
                        f'{archive}: {member} data has shape {data.shape}, '
                        f'expected N x {3 * SIDE * SIDE}')
                batch_labels = list(batch[fmt['labels'][labels]])
                if len(batch_labels) != len(data):
                    raise ValueError(
                        f'{archive}: {member} has {len(data)} images but '
                        f'{len(batch_labels)} labels')
                # rows are R plane, G plane, B plane (row-major) -> N H W C
                images.append(
                    data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1))
                targets += batch_labels
            bad = [t for t in targets if not 0 <= t < len(names)]
            if bad:
                raise ValueError(f'{archive}: {split} label {bad[0]} outside '
                                 f'0..{len(names) - 1}')
            splits[split] = (np.concatenate(images), targets)
    return names, splits


def write_folders(names: Sequence[str], images: np.ndarray,
                  targets: Sequence[int], folder: str) -> List[List[str]]:
    """Write ``folder/<class>/NNNN.png`` (NNNN: the image's index within its
    class, in archive order); returns the file names of each class."""
    files: List[List[str]] = [[] for _ in names]
    for image, label in zip(images, targets):
        name = f'{len(files[label]):04d}.png'
        os.makedirs(osp.join(folder, names[label]), exist_ok=True)
        Image.fromarray(image, 'RGB').save(
            osp.join(folder, names[label], name))
        files[label].append(name)
    return files


def convert(archive: str, root: str, val_fraction: float = 0.1,
            labels: str = 'fine') -> Dict[str, int]:
    """Convert ``archive`` into ``root`` (see the module docstring); returns
    the number of images of each list (train, val, test)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f'--val-fraction {val_fraction}: expected a number '
                         'in [0, 1)')
    for split in ('train', 'test'):
        out = osp.join(root, split)
        if osp.isdir(out) and os.listdir(out):
            raise FileExistsError(
                f'{out} is not empty: convert into a new folder')
    names, splits = read_archive(archive, labels)
    lists: Dict[str, List[str]] = dict(train=[], val=[], test=[])
    for split, (images, targets) in splits.items():
        per_class = write_folders(names, images, targets,
                                  osp.join(root, split))
        for label, files in enumerate(per_class):
            n_train = len(files) - round(len(files) * val_fraction)
            for i, f in enumerate(files):
                key = split if split == 'test' else (
                    'train' if i < n_train else 'val')
                lists[key].append(f'{names[label]}/{f} {label}')
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for key, rows in lists.items():
        with open(osp.join(root, 'meta', f'{key}.txt'), 'w') as f:
            f.write('\n'.join(rows) + '\n')
    return {key: len(rows) for key, rows in lists.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('archive', help='cifar-10-python.tar.gz or '
                   'cifar-100-python.tar.gz')
    p.add_argument('root', help='output folder, e.g. data/cifar10')
    p.add_argument('--val-fraction', type=float, default=0.1,
                   help='the last part of each training class listed as '
                   '`val` (default 0.1: CIFAR-10 files 4500-4999)')
    p.add_argument('--labels', choices=('fine', 'coarse'), default='fine',
                   help='CIFAR-100: the 100 classes or the 20 superclasses')
    args = p.parse_args(argv)
    counts = convert(args.archive, args.root, args.val_fraction, args.labels)
    for key, n in counts.items():
        print(f'{osp.join(args.root, "meta", key + ".txt")}: {n} images')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f'error: {e}')
