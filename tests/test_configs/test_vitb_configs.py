"""The ViT-B/16 ImageNet configs build their training data loader and load
a batch (generated ImageNet-like tree), as on the GPU acceptance run."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from mlmask_mm.engine.config_checks import prepare_config
from mlmask_mm.datasets.synthetic import make_image_folder

from conftest import REPO as ROOT
CONFIGS = [
    'configs/mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
    'configs/cl_mae/cl-mae_vit-base-p16_8xb256-amp-coslr-200e_in1k.py',
    # this package's transform inside mmpretrain's ImageNet (GPU acceptance
    # run of 2026-11-26: not found in mmpretrain's scope until named
    # 'mlmask_mm.RecordedRandomResizedCrop')
    'configs/sg_mae/sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
    'configs/sg_mae/sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k_refresh10.py',
]


@pytest.mark.parametrize('config', CONFIGS)
def test_mmpretrain_based_config_loads_a_batch(config, tmp_path,
                                               monkeypatch):
    classes = ['n0', 'n1']
    make_image_folder(str(tmp_path / 'data/imagenet/train'), classes, 2, 64)
    (tmp_path / 'data/imagenet/meta').mkdir()
    (tmp_path / 'data/imagenet/meta/train.txt').write_text(''.join(
        f'{c}/{i:04d}.jpg {k}\n' for k, c in enumerate(classes)
        for i in range(2)))
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(osp.join(ROOT, config))
    loader = dict(cfg.train_dataloader, batch_size=2, num_workers=0,
                  persistent_workers=False)
    assert '_scope_' in loader['collate_fn']  # what mmengine would pass on
    cfg.train_dataloader = loader
    cfg = prepare_config(cfg)
    assert '_scope_' not in cfg.train_dataloader.collate_fn
    init_default_scope('mlmask_mm')
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    assert tuple(batch['inputs'].shape) == (2, 3, 224, 224)


def shipped_configs():
    import glob
    found = []
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))):
        folder = osp.basename(osp.dirname(path))
        if folder not in ('_base_', 'transfer'):
            found.append(osp.relpath(path, ROOT))
    return found


@pytest.mark.parametrize('config', shipped_configs())
def test_every_shipped_config_has_the_fail_safe_hooks(config):
    """On the shared runtime or on mmpretrain's (docs/fail_safe.md)."""
    hooks = Config.fromfile(osp.join(ROOT, config)).default_hooks
    assert hooks.finite_loss.type.endswith('FiniteLossHook')
    assert hooks.checkpoint.backend_args.backend == 'local_atomic'
    assert hooks.preemption.type.endswith('PreemptionHook')
    assert hooks.rng_state.type.endswith('RNGStateHook')
