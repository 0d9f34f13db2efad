"""Write the train/val annotation lists of CIFAR-10 class folders you have.

For class folders of the 5,000 training images per class,
``train/<class>/0000.jpg`` ... ``4999.jpg`` (or ``.png``), e.g. a JPEG copy
packed as a tarball.  From the official ``cifar-10-python.tar.gz`` use
``cifar_to_folders.py`` instead, which writes the same lists itself.  This
project's split:

* ``train``: files 0000-4499 of each class (45,000 images), for pretraining;
* ``val``: files 4500-4999 of each class (5,000 images), held out (never
  used for pretraining; for linear probing / k-NN evaluation).

mmpretrain's folder dataset cannot filter files by name, so the split is
written as annotation lists (``<class>/<file> <label>`` per line, labels in
sorted class order), which ``ann_file`` reads::

    mkdir -p data/cifar10
    tar xzf my_cifar10_folders.tar.gz -C data/cifar10   # -> data/cifar10/train/
    python tools/dataset_converters/cifar10_split.py data/cifar10
    # -> data/cifar10/meta/train.txt (45,000 lines), meta/val.txt (5,000)
"""
import argparse
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence

CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
           'horse', 'ship', 'truck')
TRAIN_LAST = 4499  # files 0000-4499 are `train`, 4500-4999 `val`
PER_CLASS = 5000
_NAME = re.compile(r'^(\d{4})\.(jpg|jpeg|png)$', re.IGNORECASE)


def split_lists(image_dir: str, train_last: int = TRAIN_LAST,
                per_class: Optional[int] = PER_CLASS) -> Dict[str, List[str]]:
    """``{'train': [...], 'val': [...]}`` lines for ``image_dir/<class>/``.

    Raises ``ValueError`` when a class folder is missing, holds a file whose
    name is not a 4-digit index, or (``per_class`` set) does not hold
    exactly ``per_class`` images.
    """
    lines = {'train': [], 'val': []}
    for label, name in enumerate(CLASSES):
        folder = osp.join(image_dir, name)
        if not osp.isdir(folder):
            raise ValueError(f'{folder} is missing: extract the class '
                             'folders first (see this script\'s docstring)')
        files = sorted(os.listdir(folder))
        bad = [f for f in files if not _NAME.match(f)]
        if bad:
            raise ValueError(f'{folder}: unexpected file names {bad[:3]}')
        if per_class is not None and len(files) != per_class:
            raise ValueError(f'{folder}: {len(files)} images, expected '
                             f'{per_class}')
        for f in files:
            index = int(_NAME.match(f).group(1))
            split = 'train' if index <= train_last else 'val'
            lines[split].append(f'{name}/{f} {label}')
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('root', help='folder holding train/<class>/ (e.g. '
                   'data/cifar10); the lists go to <root>/meta/')
    p.add_argument('--image-dir', default='train',
                   help='class folders, relative to root')
    p.add_argument('--train-last', type=int, default=TRAIN_LAST)
    p.add_argument('--per-class', type=int, default=PER_CLASS,
                   help='expected images per class (0: do not check)')
    args = p.parse_args(argv)
    lines = split_lists(osp.join(args.root, args.image_dir), args.train_last,
                        args.per_class or None)
    os.makedirs(osp.join(args.root, 'meta'), exist_ok=True)
    for split, rows in lines.items():
        path = osp.join(args.root, 'meta', f'{split}.txt')
        with open(path, 'w') as f:
            f.write('\n'.join(rows) + '\n')
        print(f'{path}: {len(rows)} images')
    return 0


if __name__ == '__main__':
    sys.exit(main())
