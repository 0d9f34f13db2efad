"""Tiny generated ADE20K- and COCO-like datasets and a tiny pretraining run."""
import json
import os
import os.path as osp

import numpy as np
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from PIL import Image

from conftest import epoch_sleep_off, make_image_folder, tiny_config

#: the tiny encoder every transfer test uses: 4 blocks, 32 dims, 16 px
#: patches; pretrained on 32 px images (2x2 grid), transferred at 64 px (4x4
#: grid, so the position embedding is interpolated on loading)
TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2,
                 feedforward_channels=64)
PATCH = 16
PRETRAIN_SIZE = 32
SIZE = 64


def pretrain_tiny_mae(root: str, iters: int = 2) -> str:
    """Run MaskedMAE pretraining for ``iters`` iterations; its checkpoint."""
    images = make_image_folder(osp.join(root, 'images'), per_class=4)
    cfg = tiny_config(images, osp.join(root, 'pretrain'), max_iters=iters,
                      img_size=PRETRAIN_SIZE, patch_size=PATCH)
    cfg.model.backbone.arch = dict(TINY_ARCH)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.experiment_name = 'transfer_pretrain'
    init_default_scope('mlmask_mm')
    with epoch_sleep_off():
        Runner.from_cfg(cfg).train()
    return osp.join(root, 'pretrain', f'iter_{iters}.pth')


def converted_backbone(root: str, target: str = 'mmpretrain') -> str:
    """Pretrain (:func:`pretrain_tiny_mae`) and convert to a backbone-only
    checkpoint in the ``target`` layout; its path."""
    from mlmask_mm.utils.backbone_converter import convert_checkpoint
    dst = osp.join(root, 'backbone.pth')
    convert_checkpoint(pretrain_tiny_mae(root), dst, target=target)
    return dst


def make_ade_like(root: str, num_train: int = 4, num_val: int = 2,
                  size: int = SIZE, seed: int = 0) -> str:
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
                   size: int = SIZE, seed: int = 0) -> str:
    """COCO layout: {train,val}2017/*.jpg and annotations/instances_*.json,
    two classes, one or two filled rectangles per image (polygon masks)."""
    rng = np.random.default_rng(seed)
    categories = [dict(id=1, name='a'), dict(id=2, name='b')]
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
