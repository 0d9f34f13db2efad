"""List the images training skipped (``ImageFolder(bad_images='skip')``).

See docs/fail_safe.md.
"""
import os.path as osp
from typing import Dict, Iterator, List

from mmengine.dist import (all_gather_object, get_world_size,
                           is_main_process)
from mmengine.hooks import Hook
from mmengine.runner.base_loop import BaseLoop
from torch.utils.data import DataLoader

from mlmask_mm.datasets.image_folder import ImageFolder
from mlmask_mm.registry import HOOKS
from mlmask_mm.utils.checkpoint_files import atomic_write

LISTING = 'skipped_images.txt'


def image_folders(dataset, _depth: int = 0) -> Iterator[ImageFolder]:
    """Every :class:`ImageFolder` inside a dataset and its wrappers
    (``.dataset``: ``LabelledSplit``, ``RepeatDataset``, ...;
    ``.datasets``: ``ConcatDataset``)."""
    if _depth > 8 or dataset is None:
        return
    if isinstance(dataset, ImageFolder):
        yield dataset
    inner = getattr(dataset, 'dataset', None)
    if inner is not None and inner is not dataset:
        yield from image_folders(inner, _depth + 1)
    for d in getattr(dataset, 'datasets', None) or ():
        yield from image_folders(d, _depth + 1)


def train_image_folders(loop: BaseLoop) -> Iterator[ImageFolder]:
    """The ImageFolders of a training loop's dataloaders (its
    ``dataloader`` and any other, e.g. MLOTrainLoop's labelled splits)."""
    loaders = [getattr(loop, 'dataloader', None)]
    loaders += [v for v in vars(loop).values() if isinstance(v, DataLoader)]
    seen = set()
    for loader in loaders:
        for folder in image_folders(getattr(loader, 'dataset', None)):
            if id(folder) not in seen:
                seen.add(id(folder))
                yield folder


@HOOKS.register_module()
class SkippedImagesHook(Hook):
    """List the files ``ImageFolder(bad_images='skip')`` replaced.

    Every training ImageFolder with ``bad_images='skip'`` (the loop's
    dataloader and any other it holds, e.g. MLOTrainLoop's labelled
    splits) records its skipped files in its ``skip_record`` file, from
    every dataloader worker.  At each epoch end (the end of training for
    iteration-based loops) and before each checkpoint this hook writes
    them all, sorted, ``path<TAB>reason`` per line, to
    ``work_dir/skipped_images.txt`` (the processes of a distributed run
    together) and logs how many there are.  Nothing is written while no
    image is skipped; a resumed run keeps the files listed before.

    ``default_hooks.skipped_images`` in ``configs/_base_/default_runtime.py``.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self.records: List[str] = []
        self.found: Dict[str, str] = {}
        self._written = 0

    def before_run(self, runner) -> None:
        self.listing = osp.join(runner.work_dir, LISTING)
        loop = runner._train_loop  # built by Runner.train before this
        if not isinstance(loop, BaseLoop):  # test / val runs
            return
        self.records = sorted({f.skip_record
                               for f in train_image_folders(loop)
                               if f.skip_record})
        if self.records and osp.isfile(self.listing):  # a resumed run
            self.found.update(_read(self.listing))
            self._written = len(self.found)

    def _collect(self) -> None:
        for record in self.records:
            if osp.isfile(record):
                for path, reason in _read(record).items():
                    self.found.setdefault(path, reason)

    def _write(self, runner) -> None:
        if len(self.found) == self._written or not is_main_process():
            return
        text = ''.join(f'{p}\t{r}\n' for p, r in sorted(self.found.items()))
        atomic_write(text, self.listing, 'w')
        self._written = len(self.found)
        runner.logger.warning(
            f'SkippedImagesHook: {len(self.found)} unreadable image(s) '
            f"skipped so far (bad_images='skip'), listed in {self.listing}")

    def _gather_and_write(self, runner) -> None:
        if not self.records and get_world_size() == 1:
            return
        self._collect()
        if get_world_size() > 1:  # every rank calls this at the same points
            for found in all_gather_object(self.found):
                for path, reason in found.items():
                    self.found.setdefault(path, reason)
        self._write(runner)

    def after_train_epoch(self, runner) -> None:
        self._gather_and_write(runner)

    def after_train(self, runner) -> None:
        self._gather_and_write(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # the main process only (Runner.save_checkpoint): no collective
        self._collect()
        self._write(runner)


def _read(path: str) -> Dict[str, str]:
    found = {}
    with open(path) as f:
        for line in f:
            file, _, reason = line.rstrip('\n').partition('\t')
            if file:
                found.setdefault(file, reason)
    return found
