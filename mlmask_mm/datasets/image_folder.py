"""Class-folder image dataset that fails early and clearly on bad input."""
import atexit
import logging
import os
import os.path as osp
import tempfile
from typing import Dict, Optional

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmpretrain.datasets import CustomDataset

from mlmask_mm.registry import DATASETS

from .image_check import BadImageError, image_problem

BAD_IMAGE_POLICIES = ('fail', 'skip')
#: images tried in a row for one sample under ``bad_images='skip'``
MAX_REPLACEMENTS = 16


@DATASETS.register_module()
class ImageFolder(CustomDataset):
    """mmpretrain's ``CustomDataset`` (``root/class/xxx.jpg``) with checks.

    When the dataset is built (before the first iteration): a missing
    ``data_root``, a folder without images, and, for labelled data
    (``with_label=True``, the default), a class folder without images each
    raise one error naming the setting or the folder.  An empty class would
    be a label no image carries and would shift the label of every later
    class, so two trees (few-shot train/test, MLO-MAE's labelled split)
    would disagree.  Unlabelled pretraining can set ``with_label=False``:
    images are then listed recursively and folders carry no meaning.

    When an image cannot be loaded (empty, truncated, not an image,
    unreadable), the error names the file and the reason
    (:class:`~mlmask_mm.datasets.image_check.BadImageError`), whatever the
    loading transform reports.  ``bad_images`` decides what happens:

    * ``'fail'`` (default): the run stops with that error.
    * ``'skip'``: the sample is replaced by another one (chosen from the
      index, the same in every epoch and every resumed run) and the file is
      logged once.  Every process loading this dataset (dataloader workers
      included) appends it once to :attr:`skip_record`, a file chosen when
      the dataset is built, from which ``SkippedImagesHook`` (in the shared
      runtime) lists all skipped files in ``work_dir/skipped_images.txt``
      at each epoch end.  Test-mode datasets (evaluation) always fail.

    ``tools/misc/verify_dataset.py`` finds such files before training.
    See docs/fail_safe.md.
    """

    def __init__(self, data_root: str = '', data_prefix='',
                 bad_images: str = 'fail', **kwargs) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(
                f'ImageFolder: bad_images must be one of '
                f'{BAD_IMAGE_POLICIES}, got {bad_images!r}')
        prefix = data_prefix if isinstance(data_prefix, str) else \
            data_prefix.get('img_path', '')
        folder = osp.join(data_root, prefix) if data_root else prefix
        if not folder or not osp.isdir(folder):
            raise FileNotFoundError(
                f'ImageFolder: data_root={data_root!r} '
                f'(data_prefix={data_prefix!r}) is not a folder: expected '
                'class folders of images at that path')
        extensions = tuple(e.lower() for e in kwargs.get(
            'extensions', ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm',
                           '.tif')))
        if not kwargs.get('ann_file') and not _has_image(folder, extensions):
            raise ValueError(
                f'ImageFolder: data_root={data_root!r} holds no images '
                f'with extensions {extensions}')
        self.bad_images = bad_images
        #: files skipped by this process: path -> reason
        self.skipped: Dict[str, str] = {}
        #: ``path<TAB>reason`` lines of the files skipped by any process
        self.skip_record: Optional[str] = None
        if bad_images == 'skip':
            # chosen now, before dataloader workers copy the dataset
            self.skip_record = _new_record()
        super().__init__(
            data_root=data_root, data_prefix=data_prefix, **kwargs)

    # ------------------------------------------------------------ listing
    def load_data_list(self):
        data_list = super().load_data_list()
        if self.with_label and not self.ann_file:
            used = {info['gt_label'] for info in data_list}
            empty = [c for i, c in enumerate(self.metainfo['classes'])
                     if i not in used]
            if empty:
                shown = ', '.join(
                    repr(osp.join(self.img_prefix, c)) for c in empty[:5])
                more = f' and {len(empty) - 5} more' if len(empty) > 5 else ''
                raise ValueError(
                    f'ImageFolder: {len(empty)} class folder(s) without '
                    f'images (extensions {self.extensions}): {shown}{more}. '
                    'An empty class is a label no image carries and shifts '
                    'the label of every later class: remove the folder or '
                    'add images (unlabelled pretraining: with_label=False)')
        return data_list

    # ------------------------------------------------------------ loading
    def prepare_data(self, idx: int):
        info = self.get_data_info(idx)
        if self.bad_images == 'fail' or self.test_mode:
            return self._pipeline(info)
        for attempt in range(MAX_REPLACEMENTS):
            try:
                return self._pipeline(info)
            except BadImageError as e:
                self._record_skip(e.path, e.reason)
                last = e
            idx = int(np.random.default_rng([idx, attempt]).integers(
                len(self)))
            info = self.get_data_info(idx)
        raise BadImageError(
            f'ImageFolder: {MAX_REPLACEMENTS} images in a row could not be '
            f'loaded with bad_images=\'skip\' (last: {last}); check the data '
            'with tools/misc/verify_dataset.py')

    def _pipeline(self, info: dict):
        """``self.pipeline(info)``, the loading transform's failures raised
        as one :class:`BadImageError` naming the file and the reason."""
        data = info
        for transform in self.pipeline.transforms:
            if isinstance(transform, LoadImageFromFile):
                data = _load(transform, data)
            else:
                data = transform(data)
            if data is None:
                return None
        return data

    def _record_skip(self, path: str, reason: str) -> None:
        if path in self.skipped:
            return
        self.skipped[path] = reason
        seen = False
        if self.skip_record:
            line = f'{path}\t{reason}\n'
            if osp.isfile(self.skip_record):
                with open(self.skip_record) as f:
                    seen = any(r.split('\t', 1)[0] == path for r in f)
            if not seen:  # one short append: atomic between processes
                with open(self.skip_record, 'a') as f:
                    f.write(line)
        if not seen:
            print_log(
                f'ImageFolder: skipping {path!r}: {reason} '
                "(bad_images='skip': another sample replaces it; all "
                'skipped files are listed in the work directory\'s '
                'skipped_images.txt at each epoch end)',
                logger='current', level=logging.WARNING)


def _new_record() -> str:
    fd, path = tempfile.mkstemp(prefix='mlmask_mm_skipped_', suffix='.log')
    os.close(fd)
    pid = os.getpid()
    # removed when the process that built the dataset exits (workers end
    # with os._exit and do not run it)
    atexit.register(lambda: os.getpid() == pid and osp.exists(path)
                    and os.remove(path))
    return path


def _load(transform: LoadImageFromFile, results: dict) -> dict:
    path = results.get('img_path')
    try:
        out = transform(results)
    except Exception as e:
        problem = image_problem(path) if isinstance(path, str) else None
        if problem is None:  # the file is fine: not an image problem
            raise
        raise BadImageError(path, problem, 'ImageFolder: ') from e
    if out is None or out.get('img') is None:
        problem = image_problem(path) or (
            f'{type(transform).__name__} returned no image')
        raise BadImageError(path, problem, 'ImageFolder: ')
    return out


def _has_image(folder: str, extensions) -> bool:
    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(extensions) for f in files):
            return True
    return False
