"""Scan a class-folder image tree before training: every unreadable file and
every empty class folder, in parallel.

    python tools/misc/verify_dataset.py data/imagenet/train [--workers 16]
        [--out bad_images.txt] [--full-decode | --no-decode]

Each image is read and decoded with OpenCV (at 1/8 size by default: every
JPEG coefficient is still read, so truncated files are found; ``--full-decode``
decodes as training does, ``--no-decode`` only checks size and signature).
Problems are printed as ``path<TAB>reason`` (reasons as in training's
errors: empty file, not an image, truncated or corrupt data, unreadable),
then one summary line with the rate in images/s.  Exit status 1 when
anything was found, 0 otherwise.  See docs/fail_safe.md.
"""
import argparse
import multiprocessing
import os
import os.path as osp
import sys
import time
from functools import partial
from typing import Dict, List, NamedTuple, Sequence, Tuple

import cv2

from mlmask_mm.datasets.image_check import image_problem

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')


class Report(NamedTuple):
    num_images: int
    bad: Dict[str, str]  # path -> reason
    empty_classes: List[str]  # folders
    seconds: float
    workers: int

    @property
    def rate(self) -> float:
        return self.num_images / max(self.seconds, 1e-9)


def list_tree(root: str, extensions: Sequence[str] = EXTENSIONS
              ) -> Tuple[List[str], List[str]]:
    """(image paths, class folders without images) of ``root``: class
    folders are its direct subfolders, images are found recursively (as
    ``ImageFolder`` lists them), files directly in ``root`` count too."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'{root!r} is not a folder')
    extensions = tuple(e.lower() for e in extensions)
    paths, empty = [], []
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    for entry in entries:
        if entry.is_file() and entry.name.lower().endswith(extensions):
            paths.append(entry.path)
    for entry in entries:
        if not entry.is_dir():
            continue
        found = []
        for folder, _, files in os.walk(entry.path, followlinks=True):
            found += [osp.join(folder, f) for f in sorted(files)
                      if f.lower().endswith(extensions)]
        if found:
            paths += sorted(found)
        else:
            empty.append(entry.path)
    return paths, empty


def scan(root: str, workers: int = 0, decode: bool = True,
         reduced: bool = True,
         extensions: Sequence[str] = EXTENSIONS) -> Report:
    """Check every image of ``root`` with ``workers`` processes (0: one per
    CPU core; 1: in this process)."""
    start = time.perf_counter()
    paths, empty = list_tree(root, extensions)
    workers = workers or os.cpu_count() or 1
    check = partial(image_problem, decode=decode, reduced=reduced)
    if workers == 1:
        cv2.setNumThreads(1)
        problems = list(map(check, paths))
    else:
        ctx = multiprocessing.get_context('fork')
        with ctx.Pool(workers, initializer=cv2.setNumThreads,
                      initargs=(1, )) as pool:
            chunk = max(1, min(256, len(paths) // (workers * 8)))
            problems = list(pool.imap(check, paths, chunk))
    bad = {p: r for p, r in zip(paths, problems) if r is not None}
    return Report(len(paths), dict(sorted(bad.items())), empty,
                  time.perf_counter() - start, workers)


def format_report(report: Report, root: str) -> str:
    lines = [f'{p}\t{r}' for p, r in report.bad.items()]
    lines += [f'{d}\tempty class folder (no image with extensions '
              f'{", ".join(EXTENSIONS)})' for d in report.empty_classes]
    lines.append(
        f'{root}: {report.num_images} images checked in '
        f'{report.seconds:.1f} s ({report.rate:.0f} images/s, '
        f'{report.workers} processes): {len(report.bad)} unreadable, '
        f'{len(report.empty_classes)} empty class folder(s)')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='List unreadable images and empty class folders')
    parser.add_argument('root', help='folder of class folders')
    parser.add_argument('--workers', type=int, default=0,
                        help='processes (default: one per CPU core)')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--full-decode', action='store_true',
                      help='decode at full size, as training does')
    mode.add_argument('--no-decode', action='store_true',
                      help='only check size and file signature')
    parser.add_argument('--extensions', nargs='+', default=EXTENSIONS)
    parser.add_argument('--out', help='also write the problems to this file')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = scan(args.root, args.workers, decode=not args.no_decode,
                  reduced=not args.full_decode, extensions=args.extensions)
    text = format_report(report, args.root)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return 1 if report.bad or report.empty_classes else 0


if __name__ == '__main__':
    sys.exit(main())
