"""Pipeline transforms of mlmask_mm."""
import os.path as osp

import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image

from mlmask_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadRegionMask(BaseTransform):
    """Load a per-image region mask for :class:`RegionMasker`.

    For ``img_path = <root>/<rel>.<ext>`` reads ``<mask_root>/<rel>.png``
    (nonzero = mask this region), resizes it (nearest) to the current image
    size and stores it in ``results['mask']``, which ``PackInputs`` copies to
    ``data_sample.mask``.  Put it after the geometric transforms only if they
    do not move pixels (Resize); random crops/flips must be applied to image
    and mask alike, so place such transforms after a joint-transform of your
    own or use fixed-size inputs.  A missing mask file is an error naming it.
    """

    def __init__(self, mask_root: str, img_root: str) -> None:
        self.mask_root = mask_root
        self.img_root = img_root

    def transform(self, results: dict) -> dict:
        rel = osp.relpath(results['img_path'], self.img_root)
        path = osp.join(self.mask_root, osp.splitext(rel)[0] + '.png')
        if not osp.isfile(path):
            raise FileNotFoundError(f'LoadRegionMask: no mask file {path} '
                                    f'for image {results["img_path"]}')
        h, w = results['img'].shape[:2]
        mask = Image.open(path).convert('L').resize((w, h), Image.NEAREST)
        results['mask'] = (np.asarray(mask) > 0).astype(np.float32)
        return results
