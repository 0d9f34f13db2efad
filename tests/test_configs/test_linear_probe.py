"""configs/benchmarks: linear probe / fine-tune configs that load this
package's pretraining checkpoints (the arch shrunk to a 2-block ViT)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import (REPO, epoch_sleep_off, load_tool, make_image_folder,
                      tiny_config)
from mlmask_mm.engine.config_checks import (check_pretrained_checkpoint,
                                            prepare_config)
from mlmask_mm.registry import MODELS

BENCH = osp.join(REPO, 'configs', 'benchmarks')
LINEAR_CIFAR = osp.join(BENCH,
                        'vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py')
FINETUNE_CIFAR = osp.join(BENCH, 'vit-tiny-p2_1xb256-coslr-100e_cifar10.py')
LINEAR_IN1K = osp.join(BENCH, 'vit-base-p16_8xb2048-linear-coslr-90e_in1k.py')
FINETUNE_IN1K = osp.join(BENCH, 'vit-base-p16_8xb128-coslr-100e_in1k.py')
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
           'horse', 'ship', 'truck')
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2,
                 feedforward_channels=64)


def _load(name):
    return load_tool(name)


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """A MaskedMAE Runner checkpoint (2-block ViT, 16 px, patch 4)."""
    tmp = tmp_path_factory.mktemp('probe')
    cfg = tiny_config(make_image_folder(str(tmp / 'images')),
                      str(tmp / 'pretrain'), max_iters=2)
    cfg.experiment_name = 'probe_pretrain'
    with epoch_sleep_off():
        Runner.from_cfg(prepare_config(cfg)).train()
    return str(tmp / 'pretrain' / 'iter_2.pth')


def _tiny(cfg, checkpoint, embed=32):
    """Shrink a benchmark config's ViT to the pretraining checkpoint's."""
    b = cfg.model.backbone
    b.arch = dict(TINY_ARCH)
    b.img_size, b.patch_size = 16, 4
    b.init_cfg.checkpoint = checkpoint
    if b.get('frozen_stages'):
        b.frozen_stages = 2
    if cfg.model.get('neck'):
        cfg.model.neck.input_features = embed
    cfg.model.head.in_channels = embed
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        for t in loader.dataset.pipeline:
            for key in ('scale', 'crop_size'):
                if key in t:
                    t[key] = 16
        loader.batch_size = 8
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.test_dataloader = cfg.val_dataloader
    return cfg


def _cifar_tree(root):
    """CIFAR-10-like folders: files 0000-0001 (`train`) and 4500 (`val`) of
    each class, and the lists of tools/dataset_converters/cifar10_split.py."""
    for i, c in enumerate(CLASSES):
        make_image_folder(osp.join(root, 'train'), (c, ), per_class=2,
                          seed=i)
        make_image_folder(osp.join(root, 'val_tmp'), (c, ), per_class=1,
                          seed=100 + i)
        import shutil
        shutil.move(osp.join(root, 'val_tmp', c, '0000.jpg'),
                    osp.join(root, 'train', c, '4500.jpg'))
    split = _load('dataset_converters/cifar10_split')
    assert split.main([root, '--per-class', '0']) == 0
    return root


@pytest.mark.slow
def test_cifar10_linear_probe_trains_and_tests_from_a_checkpoint(
        pretrained, tmp_path):
    data = _cifar_tree(str(tmp_path / 'cifar10'))
    cfg = _tiny(Config.fromfile(LINEAR_CIFAR), pretrained)
    cfg.train_dataloader.dataset.data_root = data
    cfg.val_dataloader.dataset.data_root = data
    cfg.train_cfg.max_epochs = 1
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = 'probe_linear'
    cfg.default_hooks.logger.interval = 1
    check_pretrained_checkpoint(cfg)
    runner = Runner.from_cfg(prepare_config(cfg))
    head_before = runner.model.head.layers.head.weight.clone()
    runner.train()
    # 20 `train` images, batch 8, drop_last: 2 iterations; val = 10 images
    assert runner.iter == 2
    assert len(runner.val_dataloader.dataset) == 10
    # the frozen backbone is exactly the checkpoint's, the head learned
    ckpt = torch.load(pretrained, weights_only=True)['state_dict']
    state = runner.model.backbone.state_dict()
    assert sorted(state) == sorted(
        k[len('backbone.'):] for k in ckpt if k.startswith('backbone.'))
    for k, v in state.items():
        torch.testing.assert_close(v, ckpt['backbone.' + k], msg=k)
    assert not torch.equal(runner.model.head.layers.head.weight,
                           head_before)

    # one evaluation through tools/test.py on the `val` files
    config = str(tmp_path / 'linear.py')
    cfg.dump(config)
    test = _load('test')
    metrics = test.main([config, str(tmp_path / 'work' / 'epoch_1.pth'),
                         '--work-dir', str(tmp_path / 'test')])
    assert set(metrics) == {'accuracy/top1', 'accuracy/top5'}
    assert 0 <= metrics['accuracy/top1'] <= metrics['accuracy/top5'] <= 100


@pytest.mark.parametrize('path', [FINETUNE_CIFAR, LINEAR_IN1K, FINETUNE_IN1K])
def test_other_benchmark_configs_load_the_backbone(pretrained, path):
    """mmpretrain's recipes, with this package's checkpoint as backbone."""
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['mlmask_mm']
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.'
    assert cfg.model.backbone.init_cfg.checkpoint == ''
    linear = 'linear' in osp.basename(path)
    assert cfg.optim_wrapper.optimizer.type == ('LARS' if linear else 'AdamW')
    if not linear:
        assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    cfg = _tiny(cfg, pretrained)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = torch.load(pretrained, weights_only=True)['state_dict']
    for k, v in model.backbone.state_dict().items():
        if 'backbone.' + k in ckpt:
            torch.testing.assert_close(v, ckpt['backbone.' + k], msg=k)
        else:  # fine-tuning: the pooled-feature norm is new
            assert k.startswith('ln2.') and not linear, k
    assert model.head.num_classes == (10 if 'cifar10' in path else 1000)


def test_empty_or_missing_checkpoint_is_refused(tmp_path):
    cfg = Config.fromfile(LINEAR_CIFAR)
    with pytest.raises(ValueError, match='init_cfg.checkpoint is empty'):
        check_pretrained_checkpoint(cfg)
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'none.pth')
    with pytest.raises(FileNotFoundError, match='none.pth'):
        check_pretrained_checkpoint(cfg)
    cfg.model.backbone.init_cfg = None  # a random-init baseline is allowed
    check_pretrained_checkpoint(cfg)
