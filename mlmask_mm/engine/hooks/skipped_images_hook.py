"""List the images training skipped (``ImageFolder(bad_images='skip')``).

See docs/fail_safe.md.
"""
import os
import os.path as osp
from typing import Dict, Iterator

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.runner.base_loop import BaseLoop
from torch.utils.data import DataLoader

from mlmask_mm.datasets.image_folder import ImageFolder
from mlmask_mm.registry import HOOKS
from mlmask_mm.utils.checkpoint_files import atomic_write

RECORD = '.skipped_images.log'
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
    """Collect the files ``ImageFolder(bad_images='skip')`` replaced.

    Before the run it points every training ImageFolder (and its dataloader
    workers, started later) at ``work_dir/.skipped_images.log``, where each
    process appends a skipped file once; at each epoch end (and before each
    checkpoint) it writes the sorted list, ``path<TAB>reason`` per line, to
    ``work_dir/skipped_images.txt`` and logs how many there are.  Nothing
    is written while no image is skipped.

    ``default_hooks.skipped_images`` in ``configs/_base_/default_runtime.py``.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._listed = -1

    def before_run(self, runner) -> None:
        self.record = osp.join(runner.work_dir, RECORD)
        self.listing = osp.join(runner.work_dir, LISTING)
        loop = runner._train_loop  # built by Runner.train before this
        if not isinstance(loop, BaseLoop):  # test / val runs
            return
        for folder in train_image_folders(loop):
            folder.skip_record = self.record

    def skipped(self) -> Dict[str, str]:
        """Every file skipped so far: path -> reason."""
        if not osp.isfile(self.record):
            return {}
        found = {}
        with open(self.record) as f:
            for line in f:
                path, _, reason = line.rstrip('\n').partition('\t')
                found.setdefault(path, reason)
        return found

    def _write(self, runner) -> None:
        if not is_main_process() or not osp.isfile(self.record):
            return
        size = os.stat(self.record).st_size
        if size == self._listed:
            return
        found = self.skipped()
        text = ''.join(f'{p}\t{r}\n' for p, r in sorted(found.items()))
        atomic_write(text, self.listing, 'w')
        self._listed = size
        runner.logger.warning(
            f'SkippedImagesHook: {len(found)} unreadable image(s) skipped '
            f"so far (bad_images='skip'), listed in {self.listing}")

    def after_train_epoch(self, runner) -> None:
        self._write(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self._write(runner)

    def after_train(self, runner) -> None:
        self._write(runner)
