"""Checkpoint files that survive a killed save, and resuming past damaged ones.

Writing (:class:`AtomicLocalBackend`, file backend ``'local_atomic'``).
mmengine serialises a checkpoint into memory and then writes the bytes with
``open(path, 'wb')``: a job killed during that write (or a full disk) leaves a
truncated ``iter_N.pth`` under its final name, and the next ``--resume``
fails on it.  This backend writes to ``.<name>.partial`` in the same folder,
flushes it to disk and renames it over ``<name>`` (``os.replace``, atomic on
POSIX file systems), so a checkpoint either exists complete or not at all; a
failed write removes the partial file.  ``configs/_base_/default_runtime.py``
sets it for the ``CheckpointHook``::

    default_hooks = dict(checkpoint=dict(
        type='CheckpointHook', backend_args=dict(backend='local_atomic')))

Reading (:func:`check_checkpoint`, :func:`resolve_resume`).  A checkpoint is
a zip archive (``torch.save``); a truncated one has no central directory and
damaged bytes fail the CRC-32 of their member, so both are found without
unpickling anything.  ``tools/train.py --resume`` checks the file it is given
(one error naming it) and, in auto mode, resumes from the newest *complete*
checkpoint of the work directory with a warning for each damaged newer one.
See docs/fail_safe.md.
"""
import errno
import glob
import logging
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.logging import print_log

BACKEND_NAME = 'local_atomic'
PARTIAL_SUFFIX = '.partial'
_STEP_NAME = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


class CheckpointDamagedError(RuntimeError):
    """A checkpoint file that cannot be read back (names the file)."""


class DiskFullError(OSError):
    """A file could not be written for lack of space (names the file and
    the free space); what was under its name is unchanged."""


_FULL = {errno.ENOSPC, errno.EDQUOT}


def _size(n: float) -> str:
    for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n:.0f} {unit}' if unit == 'bytes' else \
                f'{n:.1f} {unit}'
        n /= 1024
    return f'{n:.1f} TiB'


def _full_message(error: OSError, filepath: str, folder: str,
                  size: int) -> str:
    try:
        st = os.statvfs(folder)
        space = (f'{_size(st.f_bavail * st.f_frsize)} free of '
                 f'{_size(st.f_blocks * st.f_frsize)} on the file system of '
                 f'{folder!r}')
    except OSError:
        space = f'free space of {folder!r} unknown'
    return (f'cannot write {filepath!r} ({_size(size)}): {error.strerror}; '
            f'{space}. Nothing was replaced: the previous checkpoint and '
            'last_checkpoint are as they were. Free some space (or set '
            'work_dir / default_hooks.checkpoint.out_dir elsewhere), then '
            'resume with --resume')


def partial_path(filepath: str) -> str:
    """Where :class:`AtomicLocalBackend` writes ``filepath`` first."""
    folder, name = osp.split(str(filepath))
    return osp.join(folder, f'.{name}{PARTIAL_SUFFIX}')


def atomic_write(data, filepath: str, mode: str = 'wb',
                 encoding: Optional[str] = None) -> None:
    """Write ``data`` to ``filepath`` through a temporary file + rename.

    On any exception the temporary file is removed and ``filepath`` is left
    as it was (absent, or the previous complete file).
    """
    filepath = str(filepath)
    if '://' in filepath:
        raise ValueError(
            f'{BACKEND_NAME!r} writes local files, got {filepath!r}: for '
            'remote storage set the checkpoint hook\'s backend_args to that '
            "storage's backend (e.g. default_hooks.checkpoint.backend_args="
            'None to infer it from the path)')
    folder = osp.dirname(filepath) or '.'
    os.makedirs(folder, exist_ok=True)
    tmp = partial_path(filepath)
    try:
        with open(tmp, mode, encoding=encoding) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException as e:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno in _FULL:
            raise DiskFullError(_full_message(e, filepath, folder,
                                              len(data))) from e
        raise
    try:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, filepath, 'wb')

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj, filepath, 'w', encoding=encoding)


register_backend(BACKEND_NAME, AtomicLocalBackend, force=True)


# ---------------------------------------------------------------- reading
def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a complete checkpoint, or None if it is.

    Complete: a non-empty zip archive (torch's format since 1.6) whose
    members all match their CRC-32.  Nothing is unpickled.
    """
    if not osp.exists(path):
        return 'no such file'
    if not osp.isfile(path):
        return 'not a file'
    size = osp.getsize(path)
    if size == 0:
        return 'empty file (0 bytes)'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as e:
        return (f'not a complete torch checkpoint ({size} bytes, {e}): '
                'truncated, e.g. written by a job killed while saving')
    except (OSError, EOFError, ValueError, RuntimeError) as e:
        return f'unreadable ({type(e).__name__}: {e})'
    if bad is not None:
        return f'damaged data (CRC-32 mismatch in member {bad!r})'
    return None


def _step(path: str) -> int:
    match = _STEP_NAME.match(osp.basename(path))
    return int(match.group(1)) if match else -1


def checkpoint_candidates(work_dir: str) -> Tuple[Optional[str], List[str]]:
    """(path named in ``work_dir/last_checkpoint`` or None, every
    ``iter_N.pth`` / ``epoch_N.pth`` beside it), newest first.

    Newest: the larger N, then the later modification time; the file
    ``last_checkpoint`` names comes first whatever its name.
    """
    named = None
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        with open(record) as f:
            named = f.read().strip() or None
    folder = osp.dirname(named) if named else work_dir
    files = [p for p in glob.glob(osp.join(folder, '*.pth'))
             if _STEP_NAME.match(osp.basename(p))]
    files.sort(key=lambda p: (_step(p), osp.getmtime(p)), reverse=True)
    if named is not None:
        files = [named] + [p for p in files
                           if osp.abspath(p) != osp.abspath(named)]
    return named, files


def newest_complete_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (auto) continues from, or None.

    Walks :func:`checkpoint_candidates` newest first, warns about each
    damaged one and returns the first complete one.  None when the work
    directory holds no checkpoint at all (training starts from scratch);
    one error listing the files when every checkpoint is damaged.
    """
    named, files = checkpoint_candidates(work_dir)
    damaged = []
    for path in files:
        problem = checkpoint_problem(path)
        if problem is None:
            if damaged:
                print_log(
                    f'--resume: skipped {len(damaged)} damaged '
                    f'checkpoint(s) ({"; ".join(damaged)}); resuming from '
                    f'the newest complete one, {path}', logger='current',
                    level=logging.WARNING)
            return path
        damaged.append(f'{path}: {problem}')
    if damaged:
        raise CheckpointDamagedError(
            f'--resume: no complete checkpoint in {work_dir!r}; damaged: '
            f'{"; ".join(damaged)}. Remove them (and last_checkpoint) to '
            'train from scratch')
    return None


def resolve_resume(cfg) -> None:
    """Check the checkpoint a config loads or resumes from, before training.

    ``cfg.resume`` with ``cfg.load_from=None`` (``--resume`` without a
    file): ``load_from`` becomes :func:`newest_complete_checkpoint` of
    ``cfg.work_dir``.  Otherwise a ``load_from`` file must be complete (one
    :class:`CheckpointDamagedError` naming it).  Remote paths are left to
    mmengine.  A missing file is a ``FileNotFoundError``.
    """
    load_from = cfg.get('load_from')
    if cfg.get('resume') and load_from is None:
        path = newest_complete_checkpoint(cfg.work_dir)
        if path is not None:
            cfg.load_from = path
        return
    if load_from and '://' not in str(load_from):
        setting = '--resume' if cfg.get('resume') else 'load_from'
        if not osp.exists(load_from):
            raise FileNotFoundError(f'{setting}: {load_from!r} is not a file')
        problem = checkpoint_problem(load_from)
        if problem is not None:
            hint = ''
            if cfg.get('resume'):
                hint = (' (--resume without a file resumes from the newest '
                        'complete checkpoint of the work directory)')
            raise CheckpointDamagedError(
                f'{setting}: {load_from!r} cannot be loaded: {problem}{hint}')
