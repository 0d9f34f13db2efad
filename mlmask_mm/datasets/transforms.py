"""Pipeline transforms of mlmask_mm."""
import os.path as osp

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmpretrain.datasets.transforms import PackInputs, RandomResizedCrop
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


@TRANSFORMS.register_module()
class RecordedRandomResizedCrop(RandomResizedCrop):
    """mmpretrain's ``RandomResizedCrop`` that records where it cropped.

    Adds ``results['crop_box'] = (x0, y0, x1, y1)``: the crop's edges as
    fractions of the width and height of the image it cropped (the
    continuous box ``[x0 w, x1 w) x [y0 h, y1 h)`` of pixels).  Self-Guided
    MAE's cached masks map a per-image relevance map through this box; put
    ``'crop_box'`` in ``PackInputs(meta_keys=...)`` (see
    :data:`SELF_GUIDED_META_KEYS`) so the masker sees it.
    """

    @cache_randomness
    def rand_crop_params(self, img: np.ndarray):
        # mmpretrain's draw, kept for transform() (also when mmcv's
        # cache_random_params replays it)
        self._drawn = super().rand_crop_params(img)
        return self._drawn

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        results = super().transform(results)
        top, left, crop_h, crop_w = self._drawn
        results['crop_box'] = (left / w, top / h, (left + crop_w) / w,
                               (top + crop_h) / h)
        return results


# PackInputs meta keys for Self-Guided MAE's cached masks: mmpretrain's
# defaults (sample_idx, flip, flip_direction, ...) plus the crop box
SELF_GUIDED_META_KEYS = PackInputs.DEFAULT_META_KEYS + ('crop_box', )
