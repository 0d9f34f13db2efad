"""Tiny generated ADE20K- and COCO-like datasets and a tiny pretraining run."""
import os.path as osp

from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from conftest import epoch_sleep_off, make_image_folder, tiny_config
from mlmask_mm.datasets.synthetic import make_ade_like, make_coco_like  # noqa: F401

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


def replace_sizes(node, sizes):
    """Replace every int tuple found in ``sizes`` inside a config."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (tuple, list)) and v and all(
                    isinstance(x, int) for x in v) and tuple(v) in sizes:
                node[k] = sizes[tuple(v)]
            else:
                replace_sizes(v, sizes)
    elif isinstance(node, list):
        for v in node:
            replace_sizes(v, sizes)
