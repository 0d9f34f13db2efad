"""Training through mmengine's Runner, configs, and errors before training."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import DEMO_CONFIG, REPO, make_image_folder, tiny_config
from mlmask_mm.engine.config_checks import check_config, prepare_config


def run(cfg):
    runner = Runner.from_cfg(prepare_config(cfg))
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    return runner, before


def test_few_iterations_update_model_and_write_outputs(image_folder, tmp_path):
    cfg = tiny_config(image_folder, str(tmp_path / 'work'), max_iters=4)
    cfg.custom_hooks = [dict(type='MaskVisualizationHook', num_images=3)]
    runner, before = run(cfg)
    after = runner.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith('backbone.layers') for k in changed)
    assert any(k.startswith('neck.decoder_blocks') for k in changed)
    # the position embedding stays MAE's fixed 2-D sin-cos embedding
    from mmpretrain.models.utils import build_2d_sincos_position_embedding
    sincos = build_2d_sincos_position_embedding(4, 32, cls_token=True)
    assert torch.allclose(after['backbone.pos_embed'], sincos)
    assert osp.isfile(tmp_path / 'work' / 'iter_4.pth')
    png = tmp_path / 'work' / 'masks_final.png'
    assert osp.getsize(png) > 0
    from PIL import Image
    w, h = Image.open(png).size
    assert w > h / 3 * 3  # 4 columns for 3 rows of 16 px images
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert loss == loss and loss > 0


@pytest.mark.parametrize('masker', [
    dict(type='BlockMasker', mask_ratio=0.5),
    dict(type='GridMasker', stride=2),
])
def test_maskers_train_through_runner(image_folder, tmp_path, masker):
    cfg = tiny_config(image_folder, str(tmp_path / 'w'), max_iters=2)
    cfg.model.masker = masker
    runner, _ = run(cfg)
    assert type(runner.model.masker).__name__ == masker['type']


@pytest.mark.slow
def test_region_masker_with_mask_files(tmp_path):
    """A per-image mask read by the pipeline reaches the masker."""
    import numpy as np
    from PIL import Image
    img_root = make_image_folder(str(tmp_path / 'img'), per_class=2)
    for c in ('a', 'b'):
        os.makedirs(tmp_path / 'masks' / c)
        for i in range(2):
            m = np.zeros((16, 16), np.uint8)
            m[:8] = 255
            Image.fromarray(m).save(tmp_path / 'masks' / c / f'{i:04d}.png')
    cfg = tiny_config(img_root, str(tmp_path / 'w'), max_iters=1)
    cfg.model.masker = dict(type='RegionMasker', mask_ratio=0.5)
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadRegionMask', mask_root=str(tmp_path / 'masks'),
             img_root=img_root),
        dict(type='PackInputs')
    ]
    runner = Runner.from_cfg(prepare_config(cfg))
    batch = next(iter(runner.train_dataloader))
    data = runner.model.data_preprocessor(batch, True)
    _, result = runner.model.mask(data['inputs'], data['data_samples'])
    assert torch.all(result.mask.view(-1, 4, 4)[:, :2] == 1)
    assert torch.all(result.mask.view(-1, 4, 4)[:, 2:] == 0)
    runner.train()


def test_custom_imports_from_an_mmpretrain_config(image_folder, tmp_path):
    """Another project's config (default scope mmpretrain) uses the package."""
    cfg = tiny_config(image_folder, str(tmp_path / 'w'), max_iters=1)
    cfg.default_scope = 'mmpretrain'
    cfg.custom_imports = dict(imports=['mlmask_mm'])
    cfg.model.type = 'mlmask_mm.MaskedMAE'
    cfg.model.masker = dict(type='mlmask_mm.GridMasker', stride=2)
    cfg.train_dataloader.dataset.type = 'CustomDataset'
    runner, _ = run(cfg)
    assert type(runner.model).__name__ == 'MaskedMAE'


def test_demo_and_imagenet_configs_load():
    demo = Config.fromfile(DEMO_CONFIG)
    check_config(demo)
    assert demo.train_dataloader.dataset.data_root == 'data/cifar10_demo'
    assert len(os.listdir(osp.join(REPO, 'data', 'cifar10_demo'))) == 10
    in1k = Config.fromfile(
        osp.join(REPO, 'configs', 'mae',
                 'mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'))
    check_config(in1k)
    assert in1k.model.type == 'MaskedMAE'
    # mmpretrain's eager modules and fp16 AMP step (the fast path is an
    # option until it has a GPU row in docs/benchmarks.md)
    assert in1k.model.backbone.type == 'MaskableViT'
    assert in1k.model.neck.type == 'MAEPretrainDecoder'
    assert in1k.optim_wrapper.type == 'AmpOptimWrapper'
    assert in1k.train_cfg.max_epochs == 400  # mmpretrain's recipe inherited
    from mlmask_mm.registry import MODELS
    with torch.device('meta'):
        model = MODELS.build(in1k.model)
    n = sum(p.numel() for p in model.backbone.parameters())
    assert 85e6 < n < 87e6  # ViT-B/16


# ---------------------------------------------------------------- bad input
def cli_error(config, *options, tmp_path):
    """Run tools/train.py and return (returncode, stderr)."""
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
         '--work-dir', str(tmp_path / 'w'), '--cfg-options', *options],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    return proc.returncode, proc.stderr


def test_config_errors_name_setting_and_value(image_folder, tmp_path):
    cfg = tiny_config(image_folder, str(tmp_path))
    cfg.model.masker.mask_ratio = 1.2
    with pytest.raises(ValueError, match=r'model.masker.mask_ratio .*1\.2'):
        check_config(cfg)
    cfg = tiny_config(image_folder, str(tmp_path))
    cfg.model.backbone.img_size = 18
    with pytest.raises(ValueError, match='img_size=18 is not divisible by '
                       'patch_size=4'):
        check_config(cfg)
    cfg = tiny_config(image_folder, str(tmp_path))
    cfg.train_dataloader.dataset.pipeline[1].scale = 24
    with pytest.raises(ValueError, match=r'\(24, 24\) images but '
                       r'model.backbone.img_size=16'):
        check_config(cfg)
    # a transform named with its scope (configs on mmpretrain's datasets)
    cfg.train_dataloader.dataset.pipeline[1].type = 'mlmask_mm.' + \
        cfg.train_dataloader.dataset.pipeline[1].type
    with pytest.raises(ValueError, match=r'\(24, 24\) images'):
        check_config(cfg)


def test_the_model_classs_own_check_runs_with_the_shared_ones():
    from torch import nn

    from mlmask_mm.registry import MODELS

    @MODELS.register_module(name='_ModelWithOwnCheck', force=True)
    class _ModelWithOwnCheck(nn.Module):

        @classmethod
        def check_config(cls, cfg):
            raise ValueError(f'own check of {cfg.model.type}')

    for name in ('_ModelWithOwnCheck', 'mlmask_mm._ModelWithOwnCheck'):
        with pytest.raises(ValueError, match=f'own check of {name}'):
            check_config(Config(dict(model=dict(type=name))))
    # mmseg / mmdet model types (not in this registry) have none
    check_config(Config(dict(model=dict(type='EncoderDecoder'))))
    check_config(Config(dict(model=dict(type='mmdet.MaskRCNN'))))


def test_missing_and_empty_data_fail_before_training(tmp_path):
    # raised while the runner builds its data loader, before any iteration
    cfg = tiny_config(str(tmp_path / 'nope'), str(tmp_path / 'w'))
    cfg.experiment_name = 'missing_data'  # distinct loggers/visualizers
    with pytest.raises(FileNotFoundError, match='data_root=.*nope.* is not '
                       'a folder'):
        Runner.from_cfg(prepare_config(cfg)).train()
    assert not osp.exists(tmp_path / 'w' / 'iter_1.pth')
    os.makedirs(tmp_path / 'empty' / 'a')
    cfg = tiny_config(str(tmp_path / 'empty'), str(tmp_path / 'w2'))
    cfg.experiment_name = 'empty_data'
    with pytest.raises(ValueError, match='holds no images'):
        Runner.from_cfg(prepare_config(cfg)).train()


@pytest.mark.slow
def test_cli_reports_bad_input_once(tmp_path):
    code, err = cli_error(DEMO_CONFIG, 'model.masker.mask_ratio=0',
                          tmp_path=tmp_path)
    assert code != 0
    assert 'ValueError: model.masker.mask_ratio must be in the open ' \
        'interval (0, 1), got 0' in err
    code, err = cli_error(
        DEMO_CONFIG, f'train_dataloader.dataset.data_root={tmp_path}/missing',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', tmp_path=tmp_path)
    assert code != 0
    assert 'is not a folder' in err
