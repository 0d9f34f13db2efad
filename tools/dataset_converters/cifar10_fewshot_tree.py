"""Link the CIFAR-10 class folders into the train/ + test/ tree of
tools/analysis_tools/fewshot.py, following the project's split.

The class folders ``train/<class>/0000.png`` ... ``4999.png`` (made by
cifar_to_folders.py from the official archive, docs/data.md); files
0000-4499 are the project's `train` split, 4500-4999 `val` (never used for
pretraining, the split to report on; see tools/dataset_converters/
cifar10_split.py).  This writes symbolic links::

    DST/train/<class>/NNNN.png   files --train-range (default 0000-4499)
    DST/test/<class>/NNNN.png    files --test-range  (default 4500-4999)

    python tools/dataset_converters/cifar_to_folders.py \\
        cifar-10-python.tar.gz data/cifar10
    python tools/dataset_converters/cifar10_fewshot_tree.py \\
        data/cifar10/train data/cifar10_fewshot
"""
import argparse
import os
import os.path as osp
import re
import sys
from typing import Dict, Optional, Sequence

_NAME = re.compile(r'^(\d{4})\.(jpg|jpeg|png)$', re.IGNORECASE)


def link_tree(src: str, dst: str, train_range=(0, 4499),
              test_range=(4500, 4999)) -> Dict[str, int]:
    """Link the files of every class folder of ``src`` whose index lies in
    a range; returns the number of links per split.  The ranges must not
    overlap."""
    if max(train_range[0], test_range[0]) <= min(train_range[1],
                                                 test_range[1]):
        raise ValueError(f'--train-range {train_range} and --test-range '
                         f'{test_range} overlap')
    if not osp.isdir(src):
        raise FileNotFoundError(f'{src} is not a folder of class folders')
    counts = {'train': 0, 'test': 0}
    classes = sorted(d for d in os.listdir(src)
                     if osp.isdir(osp.join(src, d)))
    if not classes:
        raise ValueError(f'{src} holds no class folders')
    for c in classes:
        for f in sorted(os.listdir(osp.join(src, c))):
            m = _NAME.match(f)
            if not m:
                continue
            index = int(m.group(1))
            for split, (lo, hi) in (('train', train_range),
                                    ('test', test_range)):
                if lo <= index <= hi:
                    os.makedirs(osp.join(dst, split, c), exist_ok=True)
                    link = osp.join(dst, split, c, f)
                    if osp.lexists(link):
                        os.remove(link)
                    os.symlink(osp.abspath(osp.join(src, c, f)), link)
                    counts[split] += 1
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src', help='class folders, e.g. data/cifar10/train')
    p.add_argument('dst', help='output tree, e.g. data/cifar10_fewshot')
    p.add_argument('--train-range', type=int, nargs=2, default=(0, 4499),
                   metavar=('FIRST', 'LAST'))
    p.add_argument('--test-range', type=int, nargs=2, default=(4500, 4999),
                   metavar=('FIRST', 'LAST'))
    args = p.parse_args(argv)
    counts = link_tree(args.src, args.dst, tuple(args.train_range),
                       tuple(args.test_range))
    for split, n in counts.items():
        print(f'{osp.join(args.dst, split)}: {n} images')
    return 0


if __name__ == '__main__':
    sys.exit(main())
