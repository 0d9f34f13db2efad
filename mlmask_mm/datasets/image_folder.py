"""Class-folder image dataset that fails early and clearly on bad input."""
import atexit
import logging
import os
import os.path as osp
import tempfile
from typing import Dict, Optional, Tuple

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmpretrain.datasets import CustomDataset

from mlmask_mm.registry import DATASETS

from .image_check import BadImageError, image_problem

BAD_IMAGE_POLICIES = ('fail', 'skip')
LABEL_MODES = (True, False, 'auto')
#: images tried in a row for one sample under ``bad_images='skip'``
MAX_REPLACEMENTS = 16


@DATASETS.register_module()
class ImageFolder(CustomDataset):
    """mmpretrain's ``CustomDataset`` with checks, for class folders and flat
    folders of images.

    Where the images are: ``data_root`` joined with ``data_prefix``; with
    ``split`` (as mmpretrain's ``ImageNet``) ``data_prefix`` defaults to
    ``split`` and ``ann_file`` to ``meta/<split>.txt`` when that file exists,
    so ``ImageFolder(data_root='data/imagenet', split='train')`` reads the
    same list, in the same order, as ``ImageNet(data_root='data/imagenet',
    split='train')`` (without its fixed 1000 classes).

    Labels (``with_label``):

    * ``True`` (default): one folder per class, ``<folder>/<class>/*.jpg``
      (any depth below the class folder), classes in sorted order; or the
      ``path label`` lines of ``ann_file``.  A folder holding images but no
      class folders is refused, naming it.
    * ``False``: every image below the folder, recursively, without labels
      (unlabelled pretraining); class folders carry no meaning.
    * ``'auto'``: ``True`` for class folders (no image directly in the
      folder), ``False`` for a flat folder (images directly in it, none in
      sub-folders); with ``ann_file``, ``True`` when its first line is
      ``path label``.  A folder with images both directly in it and in
      sub-folders is refused (set ``True`` or ``False``).  The decision is
      logged.  The ViT-B/16 ImageNet pretraining configs use it, so that
      ``data_root`` (with ``split=None``) can name either layout.

    ``labels_needed_by``: what needs the labels (e.g. "MLO-MAE's levels 2
    and 3"), named in the error when a flat folder is given with
    ``with_label=True``.

    When the dataset is built (before the first iteration): a missing
    folder, a folder without images and, for labelled data, a class folder
    without images each raise one error naming the setting or the folder.
    An empty class would be a label no image carries and would shift the
    label of every later class, so two trees (few-shot train/test, MLO-MAE's
    labelled split) would disagree.

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
                 split: Optional[str] = None, with_label=True,
                 bad_images: str = 'fail',
                 labels_needed_by: Optional[str] = None, **kwargs) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(
                f'ImageFolder: bad_images must be one of '
                f'{BAD_IMAGE_POLICIES}, got {bad_images!r}')
        if with_label not in LABEL_MODES:
            raise ValueError(
                f'ImageFolder: with_label must be True (class folders), '
                f"False (no labels) or 'auto', got {with_label!r}")
        if split:
            if not isinstance(split, str):
                raise ValueError(
                    f'ImageFolder: split must be a sub-folder name of '
                    f'data_root (e.g. \'train\') or None, got {split!r}')
            if not data_prefix:
                data_prefix = split
            ann = osp.join(data_root, 'meta', f'{split}.txt')
            if not kwargs.get('ann_file') and osp.isfile(ann):
                kwargs['ann_file'] = osp.join('meta', f'{split}.txt')
        prefix = data_prefix if isinstance(data_prefix, str) else \
            data_prefix.get('img_path', '')
        folder = osp.join(data_root, prefix) if data_root and prefix else \
            data_root or prefix
        if not folder or not osp.isdir(folder):
            how = (f' (split={split!r}: the folder data_root/{prefix}; to '
                   'read data_root itself, set split=None)') if split else \
                f' (data_prefix={data_prefix!r})'
            raise FileNotFoundError(
                f'ImageFolder: data_root={data_root!r}{how}: {folder!r} is '
                'not a folder: expected class folders of images, or images '
                'directly in it (with_label=False or \'auto\'), at that path')
        extensions = tuple(e.lower() for e in kwargs.get(
            'extensions', ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm',
                           '.tif')))
        ann_file = kwargs.get('ann_file')
        if ann_file:
            if with_label == 'auto':
                with_label = _ann_has_labels(osp.join(data_root, ann_file)
                                             if data_root else ann_file)
                _log_labels(folder, with_label, f'ann_file={ann_file!r}')
        else:
            top, below = _image_layout(folder, extensions)
            if not top and not below:
                raise ValueError(
                    f'ImageFolder: data_root={data_root!r} '
                    f'(folder {folder!r}) holds no images with extensions '
                    f'{extensions}')
            if with_label == 'auto':
                if top and below:
                    raise ValueError(
                        f"ImageFolder: with_label='auto' cannot tell the "
                        f'layout of {folder!r}: it holds images both '
                        'directly in it and in sub-folders. Set '
                        'with_label=True (class folders; the images '
                        'directly in it are not read) or with_label=False '
                        '(every image, no labels)')
                with_label = bool(below)
                _log_labels(folder, with_label,
                            'class folders' if below else 'flat folder')
            elif with_label and top and not below:
                if labels_needed_by:
                    raise NoClassFoldersError(
                        f'ImageFolder: {folder!r} (data_root={data_root!r}) '
                        'is a flat folder (images, no class folders), but '
                        f'{labels_needed_by} need labels: one folder per '
                        'class (<folder>/<class>/*.jpg)')
                raise NoClassFoldersError(
                    f'ImageFolder: {folder!r} (data_root={data_root!r}) holds '
                    'images but no class folders, and with_label=True reads '
                    'one folder per class (<folder>/<class>/*.jpg). For '
                    "unlabelled images set with_label=False (or 'auto')")
        self.bad_images = bad_images
        #: files skipped by this process: path -> reason
        self.skipped: Dict[str, str] = {}
        #: ``path<TAB>reason`` lines of the files skipped by any process
        self.skip_record: Optional[str] = None
        if bad_images == 'skip':
            # chosen now, before dataloader workers copy the dataset
            self.skip_record = _new_record()
        super().__init__(data_root=data_root, data_prefix=data_prefix,
                         with_label=with_label, **kwargs)

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


class NoClassFoldersError(ValueError):
    """Labels asked for (``with_label=True``) from a folder of images that
    has no class folders."""


def _image_layout(folder: str, extensions) -> Tuple[bool, bool]:
    """(any image directly in ``folder``, any image in a sub-folder); the
    walk stops at the first image found below."""
    top = below = False
    subdirs = []
    with os.scandir(folder) as entries:
        for e in entries:
            if e.is_dir(follow_symlinks=True):
                subdirs.append(e.path)
            elif not top and e.name.lower().endswith(extensions):
                top = True
    for sub in sorted(subdirs):
        for _, _, files in os.walk(sub, followlinks=True):
            if any(f.lower().endswith(extensions) for f in files):
                return top, True
    return top, below


def _ann_has_labels(path: str) -> bool:
    """Whether the first non-empty line of an annotation file is
    ``path label`` (an integer last field)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'ImageFolder: ann_file {path!r} is not a '
                                'file')
    with open(path) as f:
        for line in f:
            fields = line.strip().rsplit(' ', 1)
            if fields[0]:
                return len(fields) == 2 and fields[1].lstrip('-').isdigit()
    raise ValueError(f'ImageFolder: ann_file {path!r} lists no images')


def _log_labels(folder: str, with_label: bool, why: str) -> None:
    print_log(f"ImageFolder: {folder!r}: with_label='auto' -> {with_label} "
              f'({why})', logger='current', level=logging.INFO)
