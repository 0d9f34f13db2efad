"""Pretraining on one's own images with the ViT-B/16 ImageNet configs.

The documented option (docs/get_started.md, "Your own images"):

    --cfg-options train_dataloader.dataset.data_root=DIR \
                  train_dataloader.dataset.split=None

applied, as ``tools/train.py`` parses it, to each method's real ImageNet
config; the config is then shrunk for the CPU (a 2-block ViT of width 32 on
32 px images with 8 px patches, fp32 ``OptimWrapper`` instead of CUDA
AMP) and trains 2 iterations (Self-Guided MAE: the second with informed
masks) on a generated class-folder tree with 3 classes and on a flat folder
of 6 images.  MLO-MAE, whose levels
2 and 3 train a classifier, refuses a flat folder before training.
"""
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config, DictAction

from conftest import REPO
from mlmask_mm.datasets.synthetic import make_image_folder

CONFIGS = {
    'mae': 'configs/mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
    'sg_mae': 'configs/sg_mae/sg-mae_vit-base-p16_8xb512-amp-coslr-400e_'
              'in1k.py',
    'cl_mae': 'configs/cl_mae/cl-mae_vit-base-p16_8xb256-amp-coslr-200e_'
              'in1k.py',
    'mlo_mae': 'configs/mlo_mae/mlo-mae_vit-base-p16_8xb32-coslr-50e_in1k.py',
}
CLASSES = ('cat', 'dog', 'fox')


def own_data_options(folder: str):
    """The documented option, as ``--cfg-options`` strings."""
    return [f'train_dataloader.dataset.data_root={folder}',
            'train_dataloader.dataset.split=None']


def apply_options(cfg: Config, options):
    """``cfg.merge_from_dict`` of ``k=v`` strings parsed as
    ``--cfg-options`` parses them (mmengine's DictAction)."""
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (
        o.split('=', 1) for o in options)})


def class_tree(root) -> str:
    """3 class folders of 2 images (40 px: crops of any size to 32)."""
    return make_image_folder(str(root), CLASSES, per_class=2, size=40)


def flat_folder(root) -> str:
    """6 images directly in one folder."""
    tree = make_image_folder(str(root) + '_tree', ('x', ), per_class=6,
                             size=40)
    shutil.move(osp.join(tree, 'x'), str(root))
    return str(root)


def shrink(cfg: Config, work_dir: str) -> Config:
    """The ViT-B/16 config at CPU test size (model and loader only; the
    data settings under test are left as the option made them)."""
    cfg.work_dir = work_dir
    cfg.model.backbone.arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                                   feedforward_channels=64)
    cfg.model.backbone.update(img_size=32, patch_size=8)
    cfg.model.neck.update(num_patches=16, patch_size=8, embed_dim=32,
                          decoder_embed_dim=32, decoder_depth=1,
                          decoder_num_heads=2)
    cfg.model.head.patch_size = 8
    if cfg.model.type == 'CLMAE':
        cfg.model.masker.update(num_patches=16, embed_dims=32, num_heads=2,
                                num_layers=1)
    if cfg.model.type == 'SelfGuidedMAE':
        # informed masks in the second of two 1-iteration epochs: the
        # relevance of every image is generated and the measurement sample
        # drawn from the own data (class-balanced with class folders)
        cfg.model.switch = dict(criterion='fixed', start=1, by_epoch=True,
                                interval=1)
        cfg.model.measurement = dict(num_images=3, seed=0)
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'].split('.')[-1] in ('RandomResizedCrop',
                                        'RecordedRandomResizedCrop'):
            t['scale'] = 32
    sg = cfg.model.type == 'SelfGuidedMAE'
    cfg.train_dataloader.update(batch_size=6 if sg else 3, num_workers=0,
                                persistent_workers=False)
    # CUDA AMP -> fp32 on the CPU
    wrappers = [cfg.optim_wrapper[p] for p in ('mae', 'masker')] \
        if 'constructor' in cfg.optim_wrapper else [cfg.optim_wrapper]
    for w in wrappers:
        w.type = 'OptimWrapper'
        w.pop('loss_scale', None)
    cfg.train_cfg.max_epochs = 2 if sg else 1  # 2 iterations either way
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint.update(interval=1, by_epoch=True)
    cfg.randomness = dict(seed=0)
    cfg.resume = False
    return cfg


@pytest.mark.parametrize('layout', ['class_folders', 'flat'])
@pytest.mark.parametrize('method', ['mae', 'sg_mae', 'cl_mae'])
def test_imagenet_config_pretrains_on_own_folder(tmp_path, build_runner,
                                                 method, layout):
    folder = (class_tree if layout == 'class_folders' else flat_folder)(
        tmp_path / 'my_images')
    cfg = Config.fromfile(osp.join(REPO, CONFIGS[method]))
    apply_options(cfg, own_data_options(folder))
    cfg = shrink(cfg, str(tmp_path / 'work'))
    runner = build_runner(cfg, f'own_{method}_{layout}')
    dataset = runner.train_dataloader.dataset
    assert len(dataset) == 6
    assert dataset.with_label is (layout == 'class_folders')
    if layout == 'class_folders':
        assert dataset.metainfo['classes'] == CLASSES
        assert sorted({dataset.get_data_info(i)['gt_label']
                       for i in range(6)}) == [0, 1, 2]
    else:
        assert 'gt_label' not in dataset.get_data_info(0)
    runner.train()
    assert runner.iter == 2
    ckpt = torch.load(osp.join(cfg.work_dir, f'epoch_{runner.epoch}.pth'),
                      weights_only=True)
    assert ckpt['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())
    if method == 'sg_mae':
        assert bool(ckpt['state_dict']['sg_state.cache_filled'].all())
        assert ckpt['state_dict']['sg_state.switch'][0] == 1


def test_mlo_mae_refuses_a_flat_folder_before_training(tmp_path,
                                                       build_runner):
    folder = flat_folder(tmp_path / 'my_images')
    cfg = Config.fromfile(osp.join(REPO, CONFIGS['mlo_mae']))
    apply_options(cfg, own_data_options(folder) + [
        f'train_cfg.labelled_split.dataset.data_root={folder}',
        'train_cfg.labelled_split.dataset.split=None',
        'train_cfg.heldout_datasets=[]'])
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.train_cfg.train_split_dataloader.update(num_workers=0,
                                                persistent_workers=False)
    cfg.train_cfg.val_split_dataloader.update(num_workers=0,
                                              persistent_workers=False)
    runner = build_runner(cfg, 'own_mlo_flat')
    with pytest.raises(ValueError) as err:
        runner.train()
    message = str(err.value)
    assert "MLO-MAE's levels 2 and 3" in message
    assert 'is a flat folder' in message and folder in message
    assert 'need labels: one folder per class' in message
    assert not os.listdir(cfg.work_dir) or not any(
        f.endswith('.pth') for f in os.listdir(cfg.work_dir))


def test_image_folder_layouts_and_errors(tmp_path):
    from mlmask_mm.datasets import ImageFolder
    tree = class_tree(tmp_path / 'tree')
    flat = flat_folder(tmp_path / 'flat')
    # ImageNet's layout through split, with and without its list
    imagenet = tmp_path / 'imagenet'
    class_tree(imagenet / 'train')
    ds = ImageFolder(data_root=str(imagenet), split='train',
                     with_label='auto', pipeline=[])
    assert ds.with_label and len(ds) == 6 and not ds.ann_file
    (imagenet / 'meta').mkdir()
    (imagenet / 'meta' / 'train.txt').write_text('fox/0001.jpg 2\n'
                                                 'cat/0000.jpg 0\n')
    ds = ImageFolder(data_root=str(imagenet), split='train',
                     with_label='auto', pipeline=[])
    assert ds.with_label and len(ds) == 2
    assert [ds.get_data_info(i)['gt_label'] for i in range(2)] == [2, 0]
    with pytest.raises(FileNotFoundError, match=r"split='train'.*set "
                       'split=None'):
        ImageFolder(data_root=tree, split='train', pipeline=[])
    with pytest.raises(ValueError, match='holds images but no class folders'
                       ".*with_label=False \\(or 'auto'\\)"):
        ImageFolder(data_root=flat, with_label=True, pipeline=[])
    shutil.copy(osp.join(flat, '0000.jpg'), osp.join(tree, 'loose.jpg'))
    with pytest.raises(ValueError, match="with_label='auto' cannot tell"):
        ImageFolder(data_root=tree, with_label='auto', pipeline=[])
    with pytest.raises(ValueError, match="with_label must be True"):
        ImageFolder(data_root=tree, with_label='yes', pipeline=[])
