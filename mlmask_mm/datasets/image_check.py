"""Why an image file cannot be loaded: one short reason naming the kind.

Shared by :class:`~mlmask_mm.datasets.ImageFolder` (to name the file and
the reason when loading fails) and ``tools/misc/verify_dataset.py`` (to find
such files before training).  See docs/fail_safe.md.
"""
import io
from typing import Optional

import cv2
import numpy as np

#: leading bytes of the formats OpenCV / Pillow decode
SIGNATURES = (
    (b'\xff\xd8\xff', 'JPEG'),
    (b'\x89PNG\r\n\x1a\n', 'PNG'),
    (b'GIF87a', 'GIF'),
    (b'GIF89a', 'GIF'),
    (b'BM', 'BMP'),
    (b'II*\x00', 'TIFF'),
    (b'MM\x00*', 'TIFF'),
    (b'P1', 'PNM'), (b'P2', 'PNM'), (b'P3', 'PNM'),
    (b'P4', 'PNM'), (b'P5', 'PNM'), (b'P6', 'PNM'),
)


class BadImageError(OSError):
    """An image file that cannot be loaded; ``path`` and ``reason``.

    ``BadImageError(message)`` (one argument, as a DataLoader worker
    re-raises it in the main process) keeps the message as it is.
    """

    def __init__(self, path: str, reason: Optional[str] = None,
                 prefix: str = '') -> None:
        self.path, self.reason = path, reason
        super().__init__(path if reason is None else
                         f'{prefix}cannot load image {path!r}: {reason}')


def image_format(data: bytes) -> Optional[str]:
    """The format named by the leading bytes, or None."""
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'WEBP'
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def _pillow_error(data: bytes) -> Optional[str]:
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:  # noqa: BLE001  (any decoder error is the reason)
        return f'{type(e).__name__}: {e}'
    return None


def bytes_problem(data: bytes, decode: bool = True,
                  reduced: bool = False) -> Optional[str]:
    """Why ``data`` (a file's bytes) is not a loadable image, or None.

    Kinds: ``empty file``, ``not an image`` (no known signature),
    ``truncated or corrupt <FORMAT> data`` (OpenCV cannot decode it, with
    Pillow's reason) and ``<FORMAT> that OpenCV cannot decode`` (Pillow can).
    ``decode=False`` only checks size and signature.  ``reduced=True``
    decodes at 1/8 size (JPEG: every coefficient is still read, so a
    truncation is still found; faster for a scan).
    """
    if len(data) == 0:
        return 'empty file (0 bytes)'
    fmt = image_format(data)
    if fmt is None:
        return (f'not an image (no JPEG/PNG/... signature; {len(data)} '
                f'bytes starting {data[:8]!r})')
    if not decode:
        return None
    flag = cv2.IMREAD_REDUCED_COLOR_8 if reduced else cv2.IMREAD_COLOR
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error as e:
        img, cv_error = None, str(e).strip().splitlines()[-1]
    else:
        cv_error = None
    if img is not None and img.size > 0:
        return None
    pil = _pillow_error(data)
    if pil is None:
        return (f'{fmt} that OpenCV cannot decode (Pillow can; set '
                "imdecode_backend='pillow' in LoadImageFromFile)")
    return (f'truncated or corrupt {fmt} data ({len(data)} bytes; '
            f'{pil}{"; OpenCV: " + cv_error if cv_error else ""})')


def image_problem(path: str, decode: bool = True,
                  reduced: bool = False) -> Optional[str]:
    """Why the file ``path`` is not a loadable image, or None (see
    :func:`bytes_problem`; plus ``unreadable`` for files that cannot be
    read, e.g. missing or without read permission)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        return f'unreadable ({type(e).__name__}: {e.strerror or e})'
    return bytes_problem(data, decode=decode, reduced=reduced)
