"""Generated datasets on disk, in the layouts the shipped configs read.

For tests and the GPU acceptance run (``tools/misc/gpu_acceptance.sh``):
nothing is downloaded, every image is drawn from a seeded generator.

- :func:`make_image_folder`: ``root/<class>/NNNN.jpg`` (ImageFolder, and
  mmpretrain's ``ImageNet(split=...)`` without an annotation file);
- :func:`make_ade_like`: ADEChallengeData2016 (mmseg's ``ADE20KDataset``);
- :func:`make_coco_like`: COCO 2017 instances (mmdet's ``CocoDataset``).
"""
import json
import os
import os.path as osp
from typing import Sequence

import numpy as np
from PIL import Image


def make_image_folder(root: str, classes: Sequence[str] = ('a', 'b'),
                      per_class: int = 8, size: int = 16, seed: int = 0,
                      ext: str = '.jpg') -> str:
    """Write ``per_class`` random RGB images of ``size`` px per class."""
    rng = np.random.default_rng(seed)
    for c in classes:
        os.makedirs(osp.join(root, c), exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(osp.join(root, c, f'{i:04d}{ext}'),
                                      format='JPEG')
    return root


def make_ade_like(root: str, num_train: int = 4, num_val: int = 2,
                  size: int = 64, seed: int = 0) -> str:
    """ADEChallengeData2016 layout: images/{training,validation}/*.jpg and
    annotations/.../*.png with labels 0 (ignored after reduce_zero_label)
    to 4 in rectangles."""
    rng = np.random.default_rng(seed)
    for split, n in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            label = np.zeros((size, size), np.uint8)
            for cls in range(1, 5):
                y, x = rng.integers(0, size // 2, 2)
                label[y:y + size // 2, x:x + size // 2] = cls
                img[label == cls] = cls * 50
            name = f'ADE_{split}_{i:08d}'
            Image.fromarray(img).save(
                osp.join(root, 'images', split, name + '.jpg'))
            Image.fromarray(label).save(
                osp.join(root, 'annotations', split, name + '.png'))
    return root


def make_coco_like(root: str, num_train: int = 4, num_val: int = 2,
                   size: int = 64, seed: int = 0,
                   names: Sequence[str] = ('a', 'b')) -> str:
    """COCO layout: {train,val}2017/*.jpg and annotations/instances_*.json,
    two classes, one or two filled rectangles per image (polygon masks).

    ``names``: the two category names; mmdet's ``CocoDataset`` keeps only
    images of the classes in its metainfo (COCO's 80 unless overridden).
    """
    rng = np.random.default_rng(seed)
    categories = [dict(id=1, name=names[0]), dict(id=2, name=names[1])]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, n in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            img = rng.integers(0, 100, (size, size, 3), dtype=np.uint8)
            for k in range(1 + i % 2):
                w, h = rng.integers(size // 4, size // 2, 2)
                x, y = rng.integers(0, size - max(w, h), 2)
                cat = 1 + k
                img[y:y + h, x:x + w] = 120 * cat
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=i + 1, category_id=cat,
                    bbox=[float(x), float(y), float(w), float(h)],
                    area=float(w * h), iscrowd=0,
                    segmentation=[[float(x), float(y), float(x + w),
                                   float(y), float(x + w), float(y + h),
                                   float(x), float(y + h)]]))
            name = f'{i:012d}.jpg'
            Image.fromarray(img).save(osp.join(root, split, name))
            images.append(dict(id=i + 1, file_name=name, width=size,
                               height=size))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)
    return root
