"""Few-shot linear probing: tools/analysis_tools/fewshot.py end to end, sampler, classifier.

A 2-block ViT checkpoint is trained for 2 iterations in the module fixture;
the datasets are generated class-folder trees of 16 px images.
"""
import csv
import glob
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.runner import Runner, load_checkpoint

from conftest import (REPO, epoch_sleep_off, load_tool, make_image_folder,
                      tiny_config)
from mlmask_mm.engine.config_checks import prepare_config
from mlmask_mm.evaluation import FrozenFeatureExtractor, check_shots, mean_std
from mlmask_mm.evaluation.fewshot import (sample_few_shot, topk_accuracy,
                                          train_linear_classifier)
from mlmask_mm.registry import MODELS

CLASSES = ('a', 'b', 'c', 'd', 'e', 'f')


def _load_tool():
    return load_tool('fewshot')


fewshot = _load_tool()


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """(checkpoint, its config, dataset root) shared by the module."""
    tmp = tmp_path_factory.mktemp('fewshot')
    images = make_image_folder(str(tmp / 'pretrain'))
    cfg = tiny_config(images, str(tmp / 'work'), max_iters=2)
    cfg.experiment_name = 'fewshot_ckpt'
    with epoch_sleep_off():
        Runner.from_cfg(prepare_config(cfg)).train()
    ckpt = str(tmp / 'work' / 'iter_2.pth')
    config = str(tmp / 'tiny_mae.py')
    cfg.dump(config)
    data = tmp / 'toy'
    make_image_folder(str(data / 'train'), CLASSES, per_class=5, seed=1)
    make_image_folder(str(data / 'test'), CLASSES, per_class=3, seed=2)
    return ckpt, config, str(data)


@pytest.fixture
def forward_calls(monkeypatch):
    """Count FrozenFeatureExtractor forward passes (one per batch)."""
    calls = []
    original = FrozenFeatureExtractor.forward

    def counting(self, *args, **kwargs):
        calls.append(args[0].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FrozenFeatureExtractor, 'forward', counting)
    return calls


def _run(ckpt, config, data, out, *extra):
    return fewshot.main([
        ckpt, config, '--data', data, '--shots', '1', '2', '4', '--seeds',
        '2', '--out-dir', str(out), '--batch-size', '8', '--num-workers',
        '0', '--device', 'cpu', '--labels', 'pretrained', 'random-init',
        *extra
    ])


@pytest.mark.slow
def test_tool_end_to_end_extracts_once_and_caches(setup, tmp_path,
                                                  forward_calls):
    ckpt, config, data = setup
    results = _run(ckpt, config, data, tmp_path)
    # per model: train 30 images = 4 batches of 8, test 18 = 3 batches,
    # for all 3 shot counts x 2 seeds together
    assert forward_calls == [8, 8, 8, 6, 8, 8, 2] * 2
    assert len(results['results']) == 2 * 3
    for r in results['results']:
        assert len(r['acc1']) == len(r['acc5']) == 2
        assert all(0 <= a <= 100 for a in r['acc1'] + r['acc5'])
        assert all(b >= a for a, b in zip(r['acc1'], r['acc5']))
        assert r['acc1_mean'] == pytest.approx(np.mean(r['acc1']))
    # outputs: markdown (one block per model), CSV, JSON, plot
    table = open(tmp_path / 'fewshot.md').read()
    assert '## pretrained' in table and '## random-init' in table
    assert '| shots | toy Acc@1 | toy Acc@5 |' in table
    first = results['results'][0]
    assert (f'| 1 | {first["acc1_mean"]:.1f} ± {first["acc1_std"]:.1f} | '
            f'{first["acc5_mean"]:.1f} ± {first["acc5_std"]:.1f} |') in table
    rows = list(csv.DictReader(open(tmp_path / 'fewshot.csv')))
    assert [(r['model'], r['shots']) for r in rows] == [
        (m, n) for m in ('pretrained', 'random-init') for n in '124']
    assert json.load(open(tmp_path / 'fewshot.json'))['results'] == \
        results['results']
    assert osp.getsize(tmp_path / 'fewshot.png') > 1000

    # a second call reads the cache: no forward pass, the same numbers
    forward_calls.clear()
    again = _run(ckpt, config, data, tmp_path)
    assert forward_calls == []
    assert again['results'] == results['results']


def test_cached_features_are_the_checkpoints_encoder(setup, tmp_path):
    """The class token after the final norm of the checkpoint's encoder,
    computed here through MaskedMAE itself."""
    ckpt, config, data = setup
    fewshot.main([ckpt, '--data', data, '--shots', '1', '--seeds', '1',
                  '--out-dir', str(tmp_path), '--num-workers', '0',
                  '--device', 'cpu', '--no-plot'])
    entries = [torch.load(p, weights_only=True)
               for p in glob.glob(str(tmp_path / 'cache' / '*.pt'))]
    test = next(e for e in entries if e['split_root'].endswith('test'))
    dataset = fewshot.folder_dataset(osp.join(data, 'test'), [16, 16])
    from mmengine.config import Config
    model = MODELS.build(Config.fromfile(config).model)
    load_checkpoint(model, ckpt, map_location='cpu')
    model.eval()
    # the demo config's normalisation, BGR (LoadImageFromFile) to RGB
    pre = Config.fromfile(config).data_preprocessor
    images = torch.stack([dataset[i]['inputs'] for i in range(3)])
    images = images.flip(1).float()
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        tokens = model.backbone((images - mean) / std, mask=None)[0]
    torch.testing.assert_close(test['features'][:3], tokens[:, 0])
    assert test['labels'][:3].tolist() == [0, 0, 0]


def test_too_small_class_is_an_error_naming_it(setup, tmp_path,
                                               forward_calls):
    ckpt, _, _ = setup
    data = tmp_path / 'small'
    make_image_folder(str(data / 'train'), ('big', ), per_class=4)
    make_image_folder(str(data / 'train'), ('tiny', ), per_class=2)
    make_image_folder(str(data / 'test'), ('big', 'tiny'), per_class=2)
    with pytest.raises(ValueError, match=r"class 'tiny' has 2 image\(s\) "
                       r'.*fewer than shots=4'):
        fewshot.main([ckpt, '--data', str(data), '--shots', '1', '4',
                      '--out-dir', str(tmp_path / 'out'), '--num-workers',
                      '0', '--device', 'cpu'])
    assert forward_calls == []  # checked before any extraction


def test_sampling_is_exact_and_reproducible():
    labels = np.repeat(np.arange(4), [5, 9, 7, 20])
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]
    classes = ['w', 'x', 'y', 'z']
    for shots in (1, 2, 5):
        draws = [sample_few_shot(labels, classes, shots, seed)
                 for seed in range(4)]
        for idx in draws:
            assert len(set(idx.tolist())) == len(idx) == 4 * shots
            assert np.bincount(labels[idx], minlength=4).tolist() == \
                [shots] * 4
        # the same seed gives the same images, another seed others
        assert np.array_equal(draws[1],
                              sample_few_shot(labels, classes, shots, 1))
        assert any(not np.array_equal(draws[0], d) for d in draws[1:])
    # all images of the smallest class at shots = its size
    idx = sample_few_shot(labels, classes, 5, 0)
    assert sorted(idx[labels[idx] == 0]) == \
        np.flatnonzero(labels == 0).tolist()
    with pytest.raises(ValueError, match="class 'w' has 5 image"):
        sample_few_shot(labels, classes, 6, 0)
    with pytest.raises(ValueError, match='shots=0'):
        check_shots(labels, classes, 0)


def test_classifier_separates_linearly_separable_features():
    g = torch.Generator().manual_seed(0)
    C, D = 10, 32
    centres = torch.randn(C, D, generator=g) * 3

    def draw(n):
        y = torch.arange(C).repeat_interleave(n)
        return centres[y] + 0.3 * torch.randn(len(y), D, generator=g), y

    x_train, y_train = draw(4)
    x_test, y_test = draw(50)
    linear = train_linear_classifier(x_train, y_train, C, 1e-4)
    with torch.no_grad():
        acc = topk_accuracy(linear(x_test), y_test, (1, 5))
    assert acc[1] == 100.0 and acc[5] == 100.0


def test_classifier_is_the_regularised_optimum():
    """The gradient of the objective (float64) vanishes at the solution."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24, ), generator=g)
    wd = 0.05
    linear = train_linear_classifier(x, y, 3, wd)
    W = linear.weight.detach().double().t().clone().requires_grad_()
    b = linear.bias.detach().double().clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(x @ W + b, y) + \
        0.5 * wd * W.pow(2).sum()
    gW, gb = torch.autograd.grad(loss, (W, b))
    # float32 storage of the weights limits the precision
    assert gW.abs().max() < 1e-5 and gb.abs().max() < 1e-5


def test_topk_on_hand_made_logits():
    logits = torch.tensor([
        [9., 8., 7., 6., 5., 4., 3.],   # label 0: top-1
        [9., 8., 7., 6., 5., 4., 3.],   # label 4: 5th highest -> top-5
        [9., 8., 7., 6., 5., 4., 3.],   # label 5: 6th highest -> miss
        [0., 0., 1., 0., 0., 0., 2.],   # label 2: 2nd -> top-5 only
    ])
    labels = torch.tensor([0, 4, 5, 2])
    acc = topk_accuracy(logits, labels, (1, 2, 5))
    assert acc == {1: 25.0, 2: 50.0, 5: 75.0}
    # 5 classes: top-5 would always be 100 %, so it is not reported
    assert math.isnan(topk_accuracy(logits[:, :5], labels.clamp(max=4),
                                    (5, ))[5])


def test_mean_and_sample_std():
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx(
        (7 / 3, np.std([1, 2, 4], ddof=1)))
    assert mean_std([3.0]) == (3.0, 0.0)


def test_bad_arguments_are_rejected(setup, tmp_path):
    ckpt, _, data = setup
    with pytest.raises(FileNotFoundError, match='not a file'):
        fewshot.main([str(tmp_path / 'missing.pth'), '--data', data])
    with pytest.raises(FileNotFoundError, match='test'):
        fewshot.main([ckpt, '--data', str(tmp_path), '--out-dir',
                      str(tmp_path / 'o')])
    # a checkpoint without an embedded config needs --config
    bare = tmp_path / 'bare.pth'
    torch.save({'state_dict': torch.load(ckpt, weights_only=True)
                ['state_dict']}, bare)
    with pytest.raises(ValueError, match='--config'):
        fewshot.main([str(bare), '--data', data])
    with pytest.raises(SystemExit):
        fewshot.main([ckpt, '--data', data, '--seeds', '0'])


@pytest.mark.slow
def test_mmpretrain_mae_checkpoint_with_its_config(setup, tmp_path):
    """A checkpoint of mmpretrain's MAE (no embedded config) with an
    mmpretrain config gives the features of the same weights in ours."""
    ckpt, config, data = setup
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.model.type = 'mmpretrain.MAE'
    cfg.model.backbone.type = 'mmpretrain.MAEViT'
    cfg.model.pop('masker')
    mmpretrain_cfg = str(tmp_path / 'mmpretrain_mae.py')
    cfg.dump(mmpretrain_cfg)
    mae = MODELS.build(cfg.model)
    state = torch.load(ckpt, weights_only=True)['state_dict']
    mae.load_state_dict({k: v for k, v in state.items()
                         if not k.startswith('masker.')})
    bare = str(tmp_path / 'mae_mmpretrain.pth')
    torch.save({'state_dict': mae.state_dict()}, bare)
    common = ['--data', data, '--shots', '2', '--seeds', '2',
              '--num-workers', '0', '--device', 'cpu', '--no-plot']
    ours = fewshot.main([ckpt, '--out-dir', str(tmp_path / 'a')] + common)
    theirs = fewshot.main([bare, '--config', mmpretrain_cfg, '--out-dir',
                           str(tmp_path / 'b')] + common)
    assert ours['results'][0]['acc1'] == theirs['results'][0]['acc1']

    def features(out):
        entries = [torch.load(p, weights_only=True) for p in
                   glob.glob(str(tmp_path / out / 'cache' / '*.pt'))]
        return {osp.basename(e['split_root']): e['features']
                for e in entries}

    ours, theirs = features('a'), features('b')
    # mmpretrain's own config file, named as in a _base_
    released = fewshot.resolve_model(
        bare, 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
        'cls_token')['extractor']['backbone']
    assert (released['type'], released['arch']) == ('mmpretrain.MAEViT', 'b')
    assert sorted(ours) == sorted(theirs) == ['test', 'train']
    for split in ours:
        torch.testing.assert_close(ours[split], theirs[split])


def test_cifar10_fewshot_tree_links_the_project_split(tmp_path):
    tree = load_tool('dataset_converters/cifar10_fewshot_tree')
    src = tmp_path / 'train'
    for c in ('cat', 'dog'):
        (src / c).mkdir(parents=True)
        for name in ('0000.jpg', '0001.jpg', '4499.jpg', '4500.jpg',
                     '4999.jpg', 'notes.txt'):
            (src / c / name).write_bytes(b'x')
    assert tree.main([str(src), str(tmp_path / 'fs')]) == 0
    for c in ('cat', 'dog'):
        assert sorted(p.name for p in (tmp_path / 'fs' / 'train' / c)
                      .iterdir()) == ['0000.jpg', '0001.jpg', '4499.jpg']
        assert sorted(p.name for p in (tmp_path / 'fs' / 'test' / c)
                      .iterdir()) == ['4500.jpg', '4999.jpg']
    counts = tree.link_tree(str(src), str(tmp_path / 'small'), (0, 0),
                            (4500, 4500))
    assert counts == {'train': 2, 'test': 2}
    with pytest.raises(ValueError, match='overlap'):
        tree.link_tree(str(src), str(tmp_path / 'x'), (0, 4500),
                       (4500, 4999))


def test_backbone_keys_of_any_checkpoint_layout():
    from mlmask_mm.utils.backbone_converter import backbone_state_dict
    w = torch.zeros(1)
    full = {'state_dict': {'backbone.cls_token': w, 'neck.mask_token': w,
                           'masker.scorer.weight': w,
                           'backbone.layers.0._orig_mod.ln1.weight': w}}
    assert sorted(backbone_state_dict(full)) == ['cls_token',
                                                 'layers.0.ln1.weight']
    assert sorted(backbone_state_dict({'cls_token': w}, bare_ok=True)) == [
        'cls_token']


# ----------------------------------------- the metric in mmengine's test loop
FEWSHOT_CONFIG = osp.join(REPO, 'configs', 'benchmarks',
                          'fewshot_vit-tiny-p4_cifar10.py')


def _load_test_tool():
    return load_tool('test')


@pytest.mark.slow
def test_metric_through_tools_test_equals_the_tool(setup, tmp_path):
    """tools/test.py + FewShotLinearProbe on FewShotFolders gives the numbers
    of tools/analysis_tools/fewshot.py for the same checkpoint, shots and seeds."""
    from mmengine.config import Config
    ckpt, config, data = setup
    pretrain = Config.fromfile(config)
    cfg = Config.fromfile(FEWSHOT_CONFIG)
    assert cfg.test_evaluator.type == 'FewShotLinearProbe'
    cfg.model.backbone = pretrain.model.backbone
    cfg.model.backbone.pop('mask_ratio', None)
    size = pretrain.model.backbone.img_size
    loader = cfg.test_dataloader
    loader.update(batch_size=8, num_workers=0)
    loader.dataset.data_root = data
    for t in loader.dataset.pipeline:
        if t.type == 'ResizeEdge':
            t.scale = size
        if t.type == 'CenterCrop':
            t.crop_size = size
    cfg.test_evaluator.update(shots=(1, 2, 4), seeds=2)
    test_config = str(tmp_path / 'fewshot_test.py')
    cfg.dump(test_config)

    metrics = _load_test_tool().main(
        [test_config, ckpt, '--work-dir', str(tmp_path / 'test')])
    expected = fewshot.main([
        ckpt, '--data', data, '--shots', '1', '2', '4', '--seeds', '2',
        '--out-dir', str(tmp_path / 'tool'), '--num-workers', '0',
        '--device', 'cpu', '--no-plot'])['results']
    assert len(expected) == 3
    for r in expected:
        n = r['shots']
        for k in ('top1', 'top5'):
            assert metrics[f'fewshot/{n}shot_{k}'] == pytest.approx(
                r[f'acc{k[-1]}_mean'], abs=1e-6)
            assert metrics[f'fewshot/{n}shot_{k}_std'] == pytest.approx(
                r[f'acc{k[-1]}_std'], abs=1e-6)


@pytest.mark.slow
def test_fewshot_folders_and_metric_errors(setup, tmp_path):
    from mlmask_mm.datasets import FewShotFolders
    from mlmask_mm.evaluation import FewShotLinearProbe
    _, _, data = setup
    ds = FewShotFolders(data_root=data)
    assert ds.metainfo['num_support'] == 5 * len(CLASSES)
    assert len(ds) == 8 * len(CLASSES)
    assert ds.metainfo['classes'] == CLASSES
    make_image_folder(str(tmp_path / 'train'), ('a', 'b'), per_class=2)
    make_image_folder(str(tmp_path / 'test'), ('a', 'c'), per_class=2)
    with pytest.raises(ValueError, match=r"only in train \['b'\]"):
        FewShotFolders(data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='is not a folder'):
        FewShotFolders(data_root=str(tmp_path), query='val')

    metric = FewShotLinearProbe(shots=(3, ), seeds=1)
    metric.dataset_meta = dict(classes=('a', 'b'), num_support=4)
    feature = torch.zeros(4)
    results = [dict(idx=i, feature=feature, label=i % 2) for i in range(6)]
    with pytest.raises(ValueError, match="class 'a' has 2 image"):
        metric.compute_metrics(results)
    with pytest.raises(KeyError, match='FrozenFeatureExtractor'):
        metric.process(None, [dict(sample_idx=0)])
    with pytest.raises(ValueError, match='normalize'):
        FewShotLinearProbe(normalize='l1')
