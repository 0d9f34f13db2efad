"""projects/: each example config trains a couple of iterations (CPU, tiny).

- custom_masker: a masker defined in the project folder, registered and used
  from a config through ``custom_imports``; its sampling is checked against
  the closed-form keep probabilities.
- mmseg_simple_pyramid: the project config, shrunk to the tiny ViT of the
  transfer tests on 64 px images, trains 2 iterations from a converted
  checkpoint (checked by its StrictPretrainedHook).
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import conftest
from conftest import REPO, make_image_folder
from transfer_helpers import (PATCH, SIZE, TINY_ARCH, converted_backbone,
                              make_ade_like, replace_sizes)

from mlmask_mm.models.maskers.base import MaskContext

PROJECTS = osp.join(REPO, 'projects')
MASKER_CONFIG = osp.join(PROJECTS, 'custom_masker', 'configs',
                         'mae_vit-tiny-p4_texture-masker_demo.py')
SEG_CONFIG = osp.join(
    PROJECTS, 'mmseg_simple_pyramid', 'configs',
    'upernet_vit-base-p16_simple-pyramid_8xb2-amp-160k_ade20k-512x512.py')


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch):
    """custom_imports of 'projects.*' resolve from the repository root."""
    monkeypatch.syspath_prepend(REPO)


# ------------------------------------------------------------ custom masker
def texture_masker(**kwargs):
    from projects.custom_masker.texture_masker import TextureMasker
    return TextureMasker(**kwargs)


def test_texture_masker_keep_probabilities_match_closed_form():
    """K = 1 of L = 4: P(keep i) = softmax(-v / (τ v̄))_i (Gumbel-max)."""
    torch.manual_seed(0)
    masker = texture_masker(mask_ratio=0.75, temperature=0.5)
    # 4 patches of 2x2 pixels with variances 0, 1/4, 1, 4 (one channel)
    steps = torch.tensor([0.0, 1.0, 2.0, 4.0])
    img = torch.zeros(1, 1, 2, 8, dtype=torch.float64)
    for i, s in enumerate(steps):
        img[0, 0, 0, 2 * i:2 * i + 2] = s
        img[0, 0, 1, 2 * i:2 * i + 2] = -s
    ctx = MaskContext(patch_resolution=(1, 4))
    v = masker.patch_variance(img, (1, 4))
    torch.testing.assert_close(v[0], steps**2)
    n = 20000
    result = masker(torch.zeros(n, 4, 8), img.expand(n, -1, -1, -1), ctx)
    assert result.ids_keep.shape == (n, 1)
    assert torch.equal(result.mask.sum(1), torch.full((n, ), 3.0))
    freq = torch.bincount(result.ids_keep[:, 0], minlength=4).double() / n
    logits = [-float(x) / (0.5 * float(v.mean())) for x in v[0]]
    z = sum(math.exp(x) for x in logits)
    expected = torch.tensor([math.exp(x) / z for x in logits],
                            dtype=torch.float64)
    # binomial standard error <= 0.0036 at n = 20000
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
    torch.testing.assert_close(result.scores[0], expected.float())


def test_texture_masker_rejects_bad_settings():
    with pytest.raises(ValueError, match='temperature'):
        texture_masker(temperature=0)
    with pytest.raises(ValueError, match='needs the images'):
        texture_masker()(torch.zeros(1, 4, 8))


def test_custom_masker_project_trains(tmp_path):
    images = make_image_folder(str(tmp_path / 'images'), per_class=4)
    cfg = conftest.tiny_config(images, str(tmp_path / 'work'), max_iters=2,
                               config=MASKER_CONFIG)
    assert cfg.model.masker.type == 'TextureMasker'
    assert 'projects.custom_masker.texture_masker' in \
        cfg.custom_imports.imports
    cfg.experiment_name = 'project_custom_masker'
    runner = Runner.from_cfg(cfg)
    masks = []
    runner.model.masker.register_forward_hook(
        lambda m, args, out: masks.append(out.mask))
    runner.train()
    assert type(runner.model.masker).__name__ == 'TextureMasker'
    assert runner.iter == 2 and len(masks) == 2
    # 16 px / patch 4: 16 patches, 12 masked in every image
    assert torch.equal(masks[0].sum(1), torch.full((4, ), 12.0))
    loss = runner.message_hub.get_scalar('train/loss').data[0]
    assert all(math.isfinite(x) for x in loss)


# ------------------------------------------------------- seg / det projects
@pytest.fixture(scope='module')
def backbone_ckpt(tmp_path_factory):
    return converted_backbone(str(tmp_path_factory.mktemp('projects')))


def shrink_vit(cfg, checkpoint):
    cfg.model.backbone.update(
        arch=dict(TINY_ARCH), img_size=SIZE, patch_size=PATCH,
        out_indices=(3, ), drop_path_rate=0.0)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    cfg.model.neck.in_channels = TINY_ARCH['embed_dims']


def train_two_iterations(cfg, data_root, work_dir):
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].update(num_workers=0, persistent_workers=False)
        ds = cfg[name].dataset
        (ds.dataset if 'times' in ds else ds).data_root = data_root
    cfg.train_dataloader.batch_size = 2
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.optim_wrapper.type = 'OptimWrapper'  # (AMP needs a GPU)
    cfg.optim_wrapper.pop('loss_scale', None)
    cfg.work_dir = work_dir
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.mark.slow
@pytest.mark.needs_mmseg
def test_mmseg_project_trains(backbone_ckpt, tmp_path):
    data = make_ade_like(str(tmp_path / 'ade'))
    cfg = Config.fromfile(SEG_CONFIG)
    assert cfg.model.neck.type == 'SimpleFeaturePyramid'
    shrink_vit(cfg, backbone_ckpt)
    cfg.model.neck.out_channels = 16
    cfg.model.decode_head.update(in_channels=[16] * 4, channels=16)
    cfg.model.auxiliary_head.update(in_channels=16, channels=16)
    replace_sizes(cfg._cfg_dict, {(512, 512): (SIZE, SIZE),
                                  (2048, 512): (2 * SIZE, SIZE)})
    cfg.train_cfg.update(max_iters=2, val_interval=100)
    runner = train_two_iterations(cfg, data, str(tmp_path / 'seg'))
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar('train/loss').data[0]
    assert all(math.isfinite(x) for x in loss)
