"""Checkpoints: exact resume, weights-only loading, load_from, tools/test.py.

All on CPU with the tiny configs of conftest (2-block ViT, 16 px images).
"""
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import load_checkpoint

from conftest import (DEMO_CONFIG, KillAfter, load_tool, make_image_folder,
                      tiny_config)
from mlmask_mm.registry import MODELS


class _Snapshot(Hook):
    """Copy the model's state and the iteration when training starts."""
    priority = 'LOWEST'

    def before_train(self, runner):
        self.iter = runner.iter
        self.state = {k: v.clone()
                      for k, v in runner.model.state_dict().items()}


class _Batches(Hook):
    """The image paths of every training batch, by iteration."""
    priority = 'LOWEST'

    def __init__(self):
        self.paths = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.paths[runner.iter + 1] = [
            s.img_path for s in data_batch['data_samples']]


@pytest.fixture(scope='module')
def trained(tmp_path_factory, build_runner):
    """A Runner checkpoint after 2 iterations: (path, image folder)."""
    tmp = tmp_path_factory.mktemp('trained')
    root = make_image_folder(str(tmp / 'images'))
    cfg = tiny_config(root, str(tmp / 'work'), max_iters=2)
    runner = build_runner(cfg, 'ckpt_trained')
    runner.train()
    path = str(tmp / 'work' / 'iter_2.pth')
    assert osp.isfile(path)
    return path, root


# ------------------------------------------------------------ exact resume
@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_run(tmp_path, build_runner):
    # 8 images, batch 4: 2 iterations per epoch, so the resume skips a whole
    # epoch and the rest of the run crosses another epoch end
    root = make_image_folder(str(tmp_path / 'images'), per_class=4)
    N, K = 5, 2

    def cfg(work):
        c = tiny_config(root, str(tmp_path / work), max_iters=N)
        c.default_hooks.checkpoint = dict(
            type='CheckpointHook', interval=K, by_epoch=False)
        # as in the demo: pictures during training must not change it
        c.custom_hooks = [
            dict(type='MaskVisualizationHook', num_images=2, interval=2)
        ]
        return c

    full = build_runner(cfg('full'), 'ckpt_full')
    full_batches = _Batches()
    full.register_hook(full_batches)
    full.train()
    expected = full.model.state_dict()

    killed = build_runner(cfg('killed'), 'ckpt_killed')
    killed.register_hook(KillAfter(K + 1))
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    ckpt = str(tmp_path / 'killed' / f'iter_{K}.pth')
    assert not osp.exists(tmp_path / 'killed' / f'iter_{2 * K}.pth')
    # the generator states are in the checkpoint (RNGStateHook)
    saved = torch.load(ckpt, weights_only=True)
    assert saved['meta']['iter'] == K
    assert saved['rng_state']['world_size'] == 1

    c = cfg('resumed')
    c.resume = True
    c.load_from = ckpt
    resumed = build_runner(c, 'ckpt_resumed')
    snap, resumed_batches = _Snapshot(), _Batches()
    resumed.register_hook(snap)
    resumed.register_hook(resumed_batches)
    resumed.train()
    assert snap.iter == K and resumed.iter == N
    # the sampler order continues where it stopped (skipped batches
    # included), across epoch ends
    assert sorted(resumed_batches.paths) == list(range(K + 1, N + 1))
    for i in range(K + 1, N + 1):
        assert resumed_batches.paths[i] == full_batches.paths[i]
    assert full_batches.paths[1] != full_batches.paths[3]  # shuffled
    got = resumed.model.state_dict()
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f'resumed run differs in {different}'
    # the optimizer (AdamW moments) and the scheduled lr match as well
    lr_full = full.optim_wrapper.get_lr()['lr']
    assert resumed.optim_wrapper.get_lr()['lr'] == lr_full
    s_full = full.optim_wrapper.optimizer.state_dict()['state']
    s_res = resumed.optim_wrapper.optimizer.state_dict()['state']
    for i in s_full:
        for name in ('exp_avg', 'exp_avg_sq'):
            assert torch.equal(s_full[i][name], s_res[i][name])


# ---------------------------------------------------- weights-only loading
def test_runner_checkpoint_loads_with_weights_only(trained):
    path, _ = trained
    ckpt = torch.load(path, weights_only=True)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer',
            'param_schedulers', 'rng_state'} <= set(ckpt)
    loss = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert len(loss.data[0]) == 2 and np.isfinite(loss.mean())
    # the statistics methods came back through the restricted getattr
    assert loss.statistics('min') == loss.min()
    assert ckpt['meta']['iter'] == 2


def test_load_checkpoint_into_fresh_masked_mae(trained):
    path, root = trained
    cfg = tiny_config(root, '/nonexistent')
    model = MODELS.build(cfg.model)
    state = torch.load(path, weights_only=True)['state_dict']
    assert set(model.state_dict()) == set(state)
    load_checkpoint(model, path, map_location='cpu', strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_backbone_loads_into_mmpretrain_mae(trained):
    from mmpretrain.models.selfsup.mae import MAE, MAEViT
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    path, root = trained
    cfg = tiny_config(root, '/nonexistent').model
    state = torch.load(path, weights_only=True)['state_dict']

    # the whole MAE of mmpretrain (MAEViT + decoder + head)
    mae_cfg = dict(
        type='MAE',
        backbone=dict(cfg.backbone, type='MAEViT'),
        neck=dict(cfg.neck),
        head=dict(cfg.head),
        data_preprocessor=dict(cfg.data_preprocessor)
        if cfg.get('data_preprocessor') else None)
    if mae_cfg['data_preprocessor'] is None:
        mae_cfg.pop('data_preprocessor')
    mae = PRETRAIN_MODELS.build(mae_cfg)
    assert isinstance(mae, MAE)
    assert set(mae.state_dict()) == set(state)
    load_checkpoint(mae, path, map_location='cpu', strict=True)

    # the encoder alone: MaskableViT's keys are MAEViT's
    backbone_cfg = dict(cfg.backbone)
    backbone_cfg.pop('type')
    vit = MAEViT(**backbone_cfg)
    prefix = 'backbone.'
    backbone_state = {k[len(prefix):]: v for k, v in state.items()
                      if k.startswith(prefix)}
    assert set(vit.state_dict()) == set(backbone_state)
    vit.load_state_dict(backbone_state, strict=True)
    for k, v in vit.state_dict().items():
        assert torch.equal(v, backbone_state[k]), k


class Payload:
    """Any pickled object of a class nobody allowlisted."""

    def __init__(self):
        self.value = 1


class OsSystem:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


class GetattrWrite:
    """getattr(ndarray, 'tofile')(path): writes a file when unpickled with an
    unrestricted ``builtins.getattr`` (numpy arrays are allowlisted)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return np.zeros(1).tofile, (self.marker,)


class GetattrHistoryBuffer:
    """getattr on HistoryBuffer, but not one of its statistics methods."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, 'register_statistics')


@pytest.mark.parametrize('make', [
    lambda marker: Payload(),
    lambda marker: OsSystem(marker),
    lambda marker: GetattrWrite(marker),
    lambda marker: GetattrHistoryBuffer(),
], ids=['custom_class', 'os_system', 'getattr_tofile',
        'getattr_history_buffer'])
def test_disallowed_globals_are_still_refused(tmp_path, make):
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'x': make(marker)},
               path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not osp.exists(marker)


def test_restricted_getattr_only_resolves_statistics_methods():
    from mlmask_mm.utils.safe_checkpoint import history_buffer_getattr
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in [(HistoryBuffer, '__init__'), (HistoryBuffer, '__dict__'),
                      (np.ndarray, 'tofile'), (os, 'system')]:
        with pytest.raises(pickle.UnpicklingError):
            history_buffer_getattr(obj, name)


# ----------------------------------------------------- load_from new runs
def test_load_from_pretrained_starts_a_new_run(
        trained, tmp_path, build_runner):
    path, root = trained
    cfg = tiny_config(root, str(tmp_path / 'finetune'), max_iters=1)
    cfg.load_from = path
    cfg.resume = False
    runner = build_runner(cfg, 'ckpt_load_from')
    snap = _Snapshot()
    runner.register_hook(snap)
    runner.train()
    state = torch.load(path, weights_only=True)['state_dict']
    assert snap.iter == 0 and runner.iter == 1
    assert snap.state.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(snap.state[k], v), k


# ------------------------------------------------------------ tools/test.py
def _test_tool():
    return load_tool('test')


def test_test_tool_names_what_a_pretraining_config_lacks(trained, capsys):
    path, _ = trained
    with pytest.raises(SystemExit) as exc:
        _test_tool().main([DEMO_CONFIG, path])
    message = str(exc.value.code)
    assert 'test_dataloader' in message and 'test_evaluator' in message
    assert 'pre-training config' in message


def test_test_tool_evaluates_a_classifier(tmp_path):
    root = make_image_folder(str(tmp_path / 'images'), per_class=4)
    cfg = Config(dict(
        custom_imports=dict(imports=['mlmask_mm'],
                            allow_failed_imports=False),
        default_scope='mlmask_mm',
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(
                type='ClsDataPreprocessor', num_classes=2,
                mean=[125.3, 123.0, 113.9], std=[63.0, 62.1, 66.7],
                to_rgb=True),
            backbone=dict(
                type='VisionTransformer',
                arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                          feedforward_channels=64),
                img_size=16, patch_size=4),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=32,
                      loss=dict(type='CrossEntropyLoss'))),
        test_dataloader=dict(
            batch_size=4, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='ImageFolder', data_root=root, pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='PackInputs')])),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        experiment_name='ckpt_test_tool',
    ))
    config = str(tmp_path / 'cls.py')
    cfg.dump(config)
    model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'cls.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)

    tool = _test_tool()
    preds = str(tmp_path / 'preds.pkl')
    metrics = tool.main([config, ckpt, '--work-dir', str(tmp_path / 'w'),
                         '--out', preds])
    assert 0 <= metrics['accuracy/top1'] <= 100
    import mmengine
    results = mmengine.load(preds)
    assert len(results) == 8
    assert all('pred_label' in r for r in results)

    out = str(tmp_path / 'metrics.json')
    metrics2 = tool.main([
        config, ckpt, '--work-dir', str(tmp_path / 'w2'), '--out', out,
        '--out-item', 'metrics', '--cfg-options',
        'experiment_name=ckpt_test_tool2'])
    assert mmengine.load(out) == pytest.approx(metrics2)
    assert metrics2 == pytest.approx(metrics)
