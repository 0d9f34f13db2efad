"""MLO-MAE configs: names, the official run's length and schedules, the
stage-II evaluation data, the models they build."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from conftest import REPO
from mlmask_mm.registry import MODELS

MLO = osp.join(REPO, 'configs', 'mlo_mae')
CIFAR10 = osp.join(MLO, 'mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10.py')
CIFAR100 = osp.join(MLO, 'mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar100.py')
# {algorithm}_{backbone}_{NxbM-schedule}_{data}.py; the demo as the others'
NAME = re.compile(r'^mlo-mae_vit-(tiny|base)-p\d+(_[\w.-]+)?_[\w-]+\.py$')


def test_names_follow_the_openmmlab_pattern():
    names = sorted(osp.basename(p) for p in glob.glob(osp.join(MLO, '*.py')))
    assert 'vitb_in1k.py' in names  # the short alias
    for name in names:
        assert name == 'vitb_in1k.py' or NAME.match(name), name
    alias = Config.fromfile(osp.join(MLO, 'vitb_in1k.py'))
    full = Config.fromfile(osp.join(
        MLO, 'mlo-mae_vit-base-p16_8xb32-coslr-50e_in1k.py'))
    assert alias.to_dict() == full.to_dict()


@pytest.mark.parametrize('path', [CIFAR10, CIFAR100])
def test_cifar_reproduction_has_the_official_length_and_schedule(path):
    cfg = Config.fromfile(path)
    K = cfg.model.hypergrad.unroll_steps
    # 200 x 313 x 2 = 125,200 MAE steps (the official CIFAR run)
    assert cfg.train_cfg.max_iters * K == 200 * 313 * 2 == 125_200
    assert cfg.train_dataloader.batch_size == 128
    assert cfg.train_cfg.masker_update_interval == 1
    h = cfg.model.hypergrad
    assert h.get('xi1', 1.0) == h.get('xi2', 1.0) == 1.0
    ow = cfg.optim_wrapper
    assert (ow.mae.optimizer.lr, ow.head.optimizer.lr,
            ow.masker.optimizer.lr) == (1e-4, 1e-3, 1e-3)
    assert ow.masker.optimizer.eps <= 1e-12
    # no warm-up; the MAE's cosine reaches 0, the head's and the masker's
    # end at half their lr (the official schedulers, stepped per level)
    for part, t_max in (('mae', 1), ('head', 2), ('masker', 2)):
        (sched, ) = cfg.param_scheduler[part]
        assert sched.type == 'CosineAnnealingLR'
        assert sched.T_max == t_max * cfg.train_cfg.max_iters
    # stage II on held-out labelled data, top-1 and top-5
    assert cfg.val_evaluator == dict(type='Accuracy', topk=(1, 5))
    assert cfg.train_cfg.val_interval == 10 * 313


def test_cifar100_splits_the_training_set_three_ways():
    cfg = Config.fromfile(CIFAR100)
    held = cfg.val_dataloader.dataset
    levels = cfg.train_cfg.labelled_split.dataset
    mae = cfg.train_dataloader.dataset
    assert held.type == levels.type == mae.type == 'LabelledSplit'
    assert held.part == 'val' and levels.part == mae.part == 'train'
    for d in (held, levels, mae):  # one split of the *training* set
        assert (d.ratio, d.seed) == (held.ratio, held.seed)
        assert d.dataset.type == 'CIFAR100' and d.dataset.split == 'train'
    assert cfg.model.downstream_head.num_classes == 100


@pytest.mark.parametrize('name', [
    'mlo-mae_vit-base-p2_1xb128-coslr-200e_cifar10.py',
    'mlo-mae_vit-base-p16_8xb32-coslr-50e_in1k.py',
])
def test_paper_models_build(name):
    """The paper's models (meta device: no memory, no init)."""
    cfg = Config.fromfile(osp.join(MLO, name))
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    n = sum(p.numel() for p in model.masker.parameters())
    assert n == {'cifar10': 100_795_136, 'in1k': 77_171_396}[
        name.split('_')[-1][:-3]]
    assert model.hypergrad['xi1'] == model.hypergrad['xi2'] == 1.0


@pytest.mark.parametrize('name', [
    'mlo-mae_vit-base-p2_1xb256-linear-coslr-90e_cifar10.py',
    'mlo-mae_vit-base-p2_1xb256-coslr-100e_cifar10.py'
])
def test_vit_base_p2_benchmarks_read_an_mlo_checkpoint(name):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'benchmarks', name))
    b = cfg.model.backbone
    assert (b.arch, b.img_size, b.patch_size) == ('b', 32, 2)
    assert b.init_cfg.prefix == 'backbone.'  # MLOMAE's encoder keys
    assert cfg.model.head.in_channels == 768


def test_official_test_split_option(tmp_path):
    """The switch to the official protocol's stage II: mmpretrain's CIFAR10
    test split (10,000 images, never downloaded at run time), every 313
    outer iterations (the official valid_step = 625 MAE steps); the rest is
    the reproduction config."""
    from mlmask_mm.registry import DATASETS
    base = Config.fromfile(CIFAR10)
    cfg = Config.fromfile(CIFAR10.replace('.py', '_official-test.py'))
    ds = cfg.val_dataloader.dataset
    assert (ds.type, ds.split, ds.download) == ('CIFAR10', 'test', False)
    assert cfg.train_cfg.val_interval == 313
    assert cfg.model.to_dict() == base.model.to_dict()
    assert cfg.train_cfg.max_iters == base.train_cfg.max_iters
    assert base.val_dataloader.dataset.type == 'ImageFolder'  # the default
    # no archive there: mmpretrain stops without downloading
    with pytest.raises(RuntimeError, match='download'):
        DATASETS.build(dict(ds.to_dict(), data_root=str(tmp_path)))
    assert not any(tmp_path.iterdir())
