"""SelfGuidedMAE through the runner: the switch, the relevance generation,
the saved state, the ranks (docs/self_guided_mae.md)."""
import os.path as osp
import time
import types

import pytest
import torch

from mlmask_mm.engine.hooks import SelfGuidedHook
from mlmask_mm.engine.hooks.self_guided_hook import balanced_sample
from mlmask_mm.models.algorithms import SelfGuidedMAE
from mlmask_mm.registry import MODELS

from conftest import REPO

SG_DEMO = osp.join(REPO, 'configs', 'sg_mae', 'sg-mae_vit-tiny-p4_demo.py')


def sg_config(image_folder, work_dir, max_iters=6, switch=None, **model):
    """The SG demo config shrunk to a 2-block ViT on 16 px images, a check
    after every iteration."""
    from conftest import tiny_config
    cfg = tiny_config(image_folder, work_dir, max_iters=max_iters,
                      config=SG_DEMO)
    for t in cfg.train_dataloader.dataset.pipeline:
        if 'Crop' in t['type']:
            t['scale'] = 16
    cfg.model.switch = dict(dict(by_epoch=False, interval=1, earliest=1,
                                 fallback=None), **(switch or {}))
    cfg.model.measurement = dict(num_images=4)
    cfg.model.update(model)
    cfg.custom_hooks = [dict(type='SelfGuidedHook')]
    return cfg


def run(cfg):
    from mmengine.runner import Runner
    from mlmask_mm.engine.config_checks import prepare_config
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.train()
    return runner


def recorded(monkeypatch, rates):
    """SelfGuidedMAE.measure_rates returning the given (R_VO, R_MO) in turn
    (as sums over 4 images)."""
    sequence = iter(rates)

    def fake(self, inputs):
        r_vo, r_mo = next(sequence)
        return torch.tensor([4 * r_vo, 4 * r_mo, 4.], dtype=torch.float64)

    monkeypatch.setattr(SelfGuidedMAE, 'measure_rates', fake)


def spy(monkeypatch, cls, name):
    calls = []
    real = getattr(cls, name)

    def wrapper(self, runner, *args):
        calls.append(runner.iter)
        return real(self, runner, *args)

    monkeypatch.setattr(cls, name, wrapper)
    return calls


# ------------------------------------------------------------ the switch
def test_untrained_model_does_not_switch_at_the_first_check(image_folder,
                                                            tmp_path):
    """At initialisation the decoder attends near-uniformly: R_M->O ≈ m
    > R_V->O, which is not a crossing."""
    runner = run(sg_config(image_folder, str(tmp_path / 'w'), max_iters=2))
    model = runner.model
    assert not model.informed
    (p1, vo1, mo1), (p2, _, _) = model.history
    assert (p1, p2) == (1, 2)
    assert 0.6 < mo1 < 0.9 and abs(vo1 + mo1 - 1) < 1e-6
    hub = runner.message_hub
    assert hub.get_scalar('train/sg_R_MO').current() == model.history[-1][2]
    assert hub.get_scalar('train/sg_informed').current() == 0.0
    # the measurement sample is class-balanced (2 classes of 8 images,
    # sorted by class): 2 of each
    hook = next(h for h in runner.hooks if isinstance(h, SelfGuidedHook))
    labels = [int(s.gt_label) for s in hook._batch['data_samples']]
    assert sorted(labels) == [0, 0, 1, 1]


RATES = [(.3, .7), (.45, .55), (.55, .45), (.6, .4), (.48, .52), (.4, .6),
         (.3, .7)]


@pytest.mark.slow
def test_recorded_crossing_switches_at_the_crossing(image_folder, tmp_path,
                                                    monkeypatch):
    recorded(monkeypatch, RATES)
    generated = spy(monkeypatch, SelfGuidedHook, 'generate')
    drawn = []
    real_mask = SelfGuidedMAE.mask

    def mask(self, inputs, data_samples=None):
        drawn.append(self.informed)
        return real_mask(self, inputs, data_samples)

    monkeypatch.setattr(SelfGuidedMAE, 'mask', mask)
    runner = run(sg_config(image_folder, str(tmp_path / 'w'), max_iters=7))
    model = runner.model
    # below at checks 3 and 4, above again at check 5: T = 5
    assert model.switch_at == 5 and model.switch_iter == 5
    assert [p for p, _, _ in model.history] == list(range(1, 8))
    # training masks (first 7 calls; the picture hook adds none here):
    # random for iterations 0-4, informed from iteration 5 on
    assert drawn[:7] == [False] * 5 + [True] * 2
    # generated once, at T, never again ('once')
    assert generated == [4] and model.cache.refreshes == 1
    assert model.cache.generated_at == 5
    assert bool(model.cache.filled.all())


@pytest.mark.parametrize('switch,rates,expected', [
    (dict(earliest=6), RATES, 6),             # crossing at 5, earliest 6
    (dict(fallback=3), [(.3, .7)] * 7, 3),    # never below: fallback
    (dict(criterion='fixed', start=2), [(.6, .4)] * 7, 2),
    (dict(), [(.3, .7)] * 7, None),           # never below, no fallback
])
def test_decide_earliest_fallback_fixed(switch, rates, expected):
    from test_self_guided import tiny_sg
    model = tiny_sg(switch=dict(dict(by_epoch=False, interval=1, earliest=1,
                                     fallback=None), **switch))
    for progress, (r_vo, r_mo) in enumerate(rates, 1):
        if model.decide(progress, r_vo, r_mo) not in ('', 'informed'):
            model.start_informed(progress, progress)
    assert model.switch_at == expected


def test_hint_ratio_decays_linearly_from_T():
    from test_self_guided import tiny_sg
    model = tiny_sg(hint_ratio=(0.05, 0.0))
    model.start_informed(10, 100)
    for t, h in [(100, 0.05), (200, 0.025), (300, 0.0)]:
        model.set_clock(t, 300)
        assert abs(model.hint_ratio - h) < 1e-12


def test_balanced_sample_is_seeded_and_balanced():
    labels = [0] * 10 + [1] * 10 + [2] * 10  # a class-sorted list
    sample = balanced_sample(labels, 9, seed=0)
    assert sorted(labels[i] for i in sample) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(set(sample)) == 9
    assert balanced_sample(labels, 9, seed=0) == sample
    assert balanced_sample(labels, 9, seed=1) != sample
    assert len(balanced_sample(labels, 100, seed=0)) == 30
    assert len(balanced_sample([None] * 5, 3, seed=0)) == 3


# --------------------------------------------- generation modes and state
def test_state_is_tensors_and_round_trips_bit_exact(tmp_path):
    """The state in ``state_dict()`` is tensors only (mmengine's Runner
    broadcasts every entry after init_weights; ``broadcast`` takes nothing
    else) and comes back bit-exact through a weights_only load."""
    from mmengine.dist.utils import cast_data_device
    from test_self_guided import tiny_sg
    model = tiny_sg().float()
    fresh = model.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in fresh.values())
    for v in fresh.values():  # what mmengine.dist.broadcast does to each
        cast_data_device(v, torch.device('cpu')).contiguous()
    model.decide(1, 0.6, 0.4)
    model.decide(2, 0.4 + 1e-13, 0.6 - 1e-13)
    model.start_informed(2, 7)
    model.set_clock(9, 20)
    model.new_cache(3)
    model.store_relevance(torch.arange(3), torch.rand(3, 16) * 1e-3 + 1, 2)
    path = tmp_path / 'state.pth'
    torch.save(model.state_dict(), path)
    other = tiny_sg().float()
    assert not other.informed
    other.load_state_dict(torch.load(path, weights_only=True))
    for name in ('switch_at', 'switch_iter', 'seen_below', 'history',
                 '_clock', 'hint_ratio'):
        assert getattr(other, name) == getattr(model, name), name
    assert other.hint_ratio == model.hint_ratio != model.hint_schedule[0]
    for k, v in model.cache.state().items():
        assert torch.equal(other.cache.state()[k], v), k
    assert other.cache.generated_at == 2 and other.cache.refreshes == 1
    # a checkpoint without the state (e.g. plain MAE weights) starts fresh
    plain = {k: v for k, v in model.state_dict().items()
             if not k.startswith('sg_state.')}
    third = tiny_sg().float()
    missing, unexpected = third.load_state_dict(plain, strict=False)
    assert sorted(missing) == ['sg_state.history', 'sg_state.switch']
    assert not unexpected and not third.informed and third.cache is None


@pytest.mark.slow
def test_state_is_saved_and_resumed(image_folder, tmp_path, monkeypatch):
    """The switch, the history and the relevance generated at T survive a
    resume: no regeneration, the same maps."""
    generated = spy(monkeypatch, SelfGuidedHook, 'generate')
    work = str(tmp_path / 'w')
    cfg = sg_config(image_folder, work, max_iters=6,
                    switch=dict(criterion='fixed', start=3))
    model = run(cfg).model
    assert generated == [2] and model.switch_at == 3
    ckpt = torch.load(osp.join(work, 'iter_4.pth'), weights_only=True)
    state = {k[len('sg_state.'):]: v for k, v in ckpt['state_dict'].items()
             if k.startswith('sg_state.')}
    # tensors only (mmengine's post-init broadcast takes nothing else)
    assert all(isinstance(v, torch.Tensor)
               for v in ckpt['state_dict'].values())
    assert state['switch'][:2].tolist() == [3, 3]
    assert len(state['history']) == 4
    assert torch.equal(state['cache_maps'], model.cache.maps)
    generated.clear()
    cfg = sg_config(image_folder, work, max_iters=6,
                    switch=dict(criterion='fixed', start=3))
    cfg.resume, cfg.load_from = True, osp.join(work, 'iter_4.pth')
    resumed = run(cfg).model
    assert generated == []
    assert resumed.switch_at == 3 and resumed.cache.refreshes == 1
    assert torch.equal(resumed.cache.maps, model.cache.maps)
    assert [p for p, _, _ in resumed.history] == list(range(1, 7))


@pytest.mark.slow
def test_refresh_every_k_and_per_iteration_modes(image_folder, tmp_path,
                                                 monkeypatch):
    generated = spy(monkeypatch, SelfGuidedHook, 'generate')
    run(sg_config(image_folder, str(tmp_path / 'a'), max_iters=7,
                  switch=dict(criterion='fixed', start=2),
                  generation='refresh', refresh_interval=2))
    # after 2 (= T), 4 and 6 iterations: at the checks after iteration
    # indices 1, 3, 5
    assert generated == [1, 3, 5]
    generated.clear()
    runner = run(sg_config(image_folder, str(tmp_path / 'b'), max_iters=4,
                           switch=dict(criterion='fixed', start=2),
                           generation='iteration'))
    assert generated == [] and runner.model.cache is None
    # the solver's products and cap share are logged every iteration
    hub = runner.message_hub
    assert hub.get_scalar('train/sg_solver_products').current() >= 1
    assert hub.get_scalar('train/sg_solver_cap_share').current() == 0


@pytest.mark.slow
def test_bad_setups_fail_before_training(image_folder, tmp_path):
    from mmengine.runner import Runner
    from mlmask_mm.engine.config_checks import prepare_config

    def fails(cfg, error, match):
        runner = Runner.from_cfg(prepare_config(cfg))
        with pytest.raises(error, match=match):
            runner.train()
        assert runner.iter == 0

    cfg = sg_config(image_folder, str(tmp_path / 'a'))
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'] == 'RecordedRandomResizedCrop':
            t['type'] = 'RandomResizedCrop'
    fails(cfg, ValueError, 'one RecordedRandomResizedCrop')
    cfg = sg_config(image_folder, str(tmp_path / 'b'))
    cfg.train_dataloader.dataset.pipeline[-1].pop('meta_keys')
    fails(cfg, ValueError, r"lack \['crop_box'\]")
    cfg = sg_config(image_folder, str(tmp_path / 'c'))
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2, dataset=cfg.train_dataloader.dataset)
    fails(cfg, TypeError, 'BaseDataset')
    cfg = sg_config(image_folder, str(tmp_path / 'd'), switch=dict(
        by_epoch=True))
    fails(cfg, ValueError, 'by_epoch')
    cfg = sg_config(image_folder, str(tmp_path / 'e'))
    cfg.model = dict(cfg.model, type='MaskedMAE')
    for key in ('informed_masker', 'features', 'feature_layer', 'ncut',
                'generation', 'switch', 'hint_ratio', 'measurement'):
        cfg.model.pop(key)
    fails(cfg, TypeError, 'SelfGuidedMAE')


@pytest.mark.parametrize('kwargs,match', [
    (dict(generation='cached'), 'generation'),
    (dict(refresh_interval=5), 'refresh_interval'),
    (dict(switch=dict(criterion='fixed')), 'switch.start'),
    (dict(switch=dict(start=3)), 'switch.start'),
    (dict(switch=dict(earliest=10, fallback=5)), 'fallback'),
    (dict(switch=dict(begin=3)), r"unknown switch settings \['begin'\]"),
    (dict(ncut=dict(threshold=0.2)), 'unknown ncut'),
    (dict(features='tokens'), 'features'),
    (dict(feature_layer=5), 'feature_layer'),
    (dict(hint_ratio=(1.0, 0.0)), 'hint_ratio'),
    (dict(informed_masker=dict(type='SelfGuidedMasker', mask_ratio=0.5)),
     'mask_ratio'),
])
def test_constructor_errors(kwargs, match):
    from test_masked_mae import model_cfg
    with pytest.raises(ValueError, match=match):
        MODELS.build(model_cfg(algorithm='SelfGuidedMAE', **kwargs))


def test_sg_configs_build():
    from mmengine.config import Config
    from conftest import REPO
    from mlmask_mm.engine.config_checks import check_config
    names = ('sg-mae_vit-tiny-p4_demo.py',
             'sg-mae_vit-tiny-p4_demo_iteration.py',
             'sg-mae_vit-tiny-p2_1xb256-amp-coslr-400e_cifar10.py',
             'sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
             'sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k_refresh10.py')
    for name in names:
        cfg = Config.fromfile(osp.join(REPO, 'configs', 'sg_mae', name))
        check_config(cfg)
        assert cfg.model.type == 'SelfGuidedMAE'
        assert cfg.custom_hooks[0].type == 'SelfGuidedHook'
        # (scope-prefixed in the configs on mmpretrain's ImageNet)
        assert cfg.train_dataloader.dataset.pipeline[1].type.split(
            '.')[-1] == 'RecordedRandomResizedCrop'
        if 'demo' not in name:  # the paper's schedule: T ≈ 50 of 400
            assert cfg.model.switch == dict(
                criterion='crossing', by_epoch=True, interval=1, earliest=10,
                fallback=50)
            assert cfg.model.generation == ('refresh' if 'refresh' in name
                                            else 'once')
    model = MODELS.build(Config.fromfile(SG_DEMO).model)
    assert isinstance(model, SelfGuidedMAE) and model.features == 'values'


# ------------------------------------------------------------- two ranks
def _two_rank_worker(rank, world, init_file, image_root, out_file):
    import torch.distributed as dist
    from mmengine.dataset import default_collate
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.registry import DefaultScope
    from mlmask_mm.datasets import ImageFolder
    torch.set_num_threads(1)  # the parent's thread pool does not survive fork
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    try:
        from test_self_guided import tiny_sg
        model = tiny_sg().float()
        model.seen_below = True  # R_M->O has been below R_V->O
        # this rank's batch alone: rank 0 would switch (R_MO .6 >= .4),
        # rank 1 would not (.3 < .7); over the 4 images together R_MO =
        # (3 * .6 + .3) / 4 = .525 >= .475 = R_VO: both switch
        n, r_vo, r_mo = (3, .4, .6) if rank == 0 else (1, .7, .3)
        model.measure_rates = lambda inputs: torch.tensor(
            [n * r_vo, n * r_mo, n], dtype=torch.float64)
        with DefaultScope.overwrite_default_scope('mlmask_mm'):
            dataset = ImageFolder(data_root=image_root, pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='Resize', scale=(16, 16), keep_ratio=False),
                dict(type='PackInputs', meta_keys=('sample_idx', ))])
        hook = SelfGuidedHook()
        hook._whole = dataset
        runner = types.SimpleNamespace(
            model=model, iter=0, optim_wrapper=None,
            message_hub=MessageHub.get_instance(f'sg{rank}'),
            logger=MMLogger.get_instance(f'sg{rank}'),
            train_dataloader=types.SimpleNamespace(
                batch_size=2, num_workers=0, collate_fn=default_collate))
        hook.check(runner, 1, 1)
        torch.save(dict(switch_at=model.switch_at, history=model.history,
                        maps=model.cache.maps, filled=model.cache.filled),
                   f'{out_file}{rank}')
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('num_images', [5, 1])  # uneven; one rank empty
def test_two_ranks_that_would_decide_differently_agree(tmp_path,
                                                       num_images):
    """Rates summed over the ranks, decision broadcast: both ranks switch
    at the same check and the generation's all-gather completes."""
    import torch.multiprocessing as mp
    from conftest import make_image_folder
    root = make_image_folder(str(tmp_path / 'img'), classes=('a', ),
                             per_class=num_images)
    ctx = mp.start_processes(
        _two_rank_worker, args=(2, str(tmp_path / 'init'), root,
                                str(tmp_path / 'out')),
        nprocs=2, start_method='fork', join=False)
    deadline = time.time() + 120
    while not ctx.join(timeout=5):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail('the two ranks hung')
    out = [torch.load(tmp_path / f'out{r}', weights_only=True)
           for r in range(2)]
    assert out[0]['switch_at'] == out[1]['switch_at'] == 1
    assert out[0]['history'] == out[1]['history']
    p, r_vo, r_mo = out[0]['history'][0]
    assert abs(r_vo - 0.475) < 1e-12 and abs(r_mo - 0.525) < 1e-12
    for o in out:
        assert bool(o['filled'].all()) and len(o['filled']) == num_images
    assert torch.equal(out[0]['maps'], out[1]['maps'])


@pytest.mark.slow
def test_analysis_tool_on_the_imagenet_config(tmp_path):
    """tools/analysis_tools/sg_analysis.py on the ImageNet config (shrunk): an
    ImageNet-style tree of images of different sizes."""
    import subprocess
    import sys
    import numpy as np
    from PIL import Image
    from conftest import REPO
    root = tmp_path / 'imagenet'
    rng = np.random.default_rng(0)
    lines = []
    for label, (cls, (h, w)) in enumerate([('n01', (60, 40)),
                                          ('n02', (36, 52))]):
        (root / 'train' / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(
                root / 'train' / cls / f'{i}.JPEG')
            lines.append(f'{cls}/{i}.JPEG {label}')
    (root / 'meta').mkdir()
    (root / 'meta' / 'train.txt').write_text('\n'.join(lines) + '\n')
    config = tmp_path / 'tiny_in1k.py'
    base = osp.join(REPO, 'configs', 'sg_mae',
                    'sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py')
    config.write_text(
        f"_base_ = [{base!r}]\n"
        "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32, "
        "num_layers=2, "
        "num_heads=2, feedforward_channels=64), img_size=32),\n"
        "             neck=dict(num_patches=4, embed_dim=32, "
        "decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2))\n"
        "train_dataloader = dict(dataset=dict(pipeline=[\n"
        "    dict(type='LoadImageFromFile'),\n"
        "    dict(type='RecordedRandomResizedCrop', scale=32),\n"
        "    dict(type='PackInputs')]))\n")
    out = tmp_path / 'analysis'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'analysis_tools', 'sg_analysis.py'),
         str(config), '--data', str(root), '--num-images', '4', '--out-dir',
         str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['num_images'] == 4
    assert abs(sum(metrics['exploitation'][0][k] for k in ('R_VO', 'R_MO'))
               - 1) < 1e-5


# ------------------------------------------------ what the switch measures
def test_rates_are_measured_at_the_last_of_two_decoder_layers():
    """measure_rates returns the rollout's rates at the LAST decoder layer
    (the paper's R at the output), not the first: a two-layer decoder whose
    layers give different rates."""
    from mlmask_mm.models.utils.exploitation import \
        decoder_attention_rates
    from mlmask_mm.models.maskers.base import mask_from_ranking, num_visible
    from test_masked_mae import model_cfg
    cfg = model_cfg(algorithm='SelfGuidedMAE')
    cfg['neck'].update(decoder_depth=2)
    torch.manual_seed(0)
    model = MODELS.build(cfg).double().eval()
    # peaked attention in the first layer: the layers' rates differ clearly
    model.neck.decoder_blocks[0].attn.qkv.weight.data.mul_(10)
    inputs = torch.randn(6, 3, 16, 16, dtype=torch.float64)
    sums = model.measure_rates(inputs)
    assert sums[2] == 6
    # the same seeded random masks (measurement.seed), every layer's rates
    tokens = model.backbone.embed(inputs)
    torch.manual_seed(model.measurement['seed'])
    noise = torch.rand(6, tokens.shape[1])
    result = mask_from_ranking(noise, num_visible(tokens.shape[1], 0.75))
    layers = decoder_attention_rates(model, tokens, result)
    assert len(layers) == 2
    first, last = ([float(r[k].sum()) for k in ('R_VO', 'R_MO')]
                   for r in (layers[0], layers[-1]))
    assert abs(first[0] - last[0]) > 0.05  # the layers differ
    assert sums[:2].tolist() == pytest.approx(last, abs=1e-6)


@pytest.mark.slow
def test_generation_and_measurement_see_whole_images_and_logs(tmp_path,
                                                              monkeypatch):
    """The relevance generation pass and the rate measurement read every
    image whole (resized to the input size: no random crop, no flip); once
    informed, ``mask_specificity`` is logged every iteration; near-uniform
    features are warned about once per pass, naming the layer and the
    share of images."""
    import glob

    import mmcv
    from conftest import make_image_folder
    root = make_image_folder(str(tmp_path / 'img'), size=24)  # resized
    seen = {'relevance': [], 'rates': []}
    real_rel, real_rates = SelfGuidedMAE.image_relevance, \
        SelfGuidedMAE.measure_rates

    def image_relevance(self, inputs, *args, **kwargs):
        seen['relevance'].append(inputs.clone())
        return real_rel(self, inputs, *args, **kwargs)

    def measure_rates(self, inputs):
        seen['rates'].append(inputs.clone())
        return real_rates(self, inputs)

    monkeypatch.setattr(SelfGuidedMAE, 'image_relevance', image_relevance)
    monkeypatch.setattr(SelfGuidedMAE, 'measure_rates', measure_rates)
    work = str(tmp_path / 'w')
    cfg = sg_config(root, work, max_iters=4,
                    switch=dict(criterion='fixed', start=2),
                    ncut=dict(degenerate_cos=-1.0))  # every image counts
    runner = run(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, SelfGuidedHook))
    dataset = runner.train_dataloader.dataset
    prep = runner.model.data_preprocessor

    def whole(i):  # the file, resized whole as the config's crop would
        img = mmcv.imread(dataset.get_data_info(i)['img_path'])
        img = mmcv.imresize(img, (16, 16), interpolation='bicubic',
                            backend='pillow')
        x = torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1).float()
        return (x - prep.mean.view(3, 1, 1)) / prep.std.view(3, 1, 1)

    generated = torch.cat(seen['relevance'])
    assert len(generated) == len(dataset) == 16
    for i in range(16):  # the pass reads the indices in order
        torch.testing.assert_close(generated[i], whole(i), atol=1e-4,
                                   rtol=0)
    sample = [int(s.sample_idx) for s in hook._batch['data_samples']]
    assert len(seen['rates']) == 4  # a check after every iteration
    for inputs in seen['rates']:
        for k, i in enumerate(sample):
            torch.testing.assert_close(inputs[k], whole(i), atol=1e-4,
                                       rtol=0)
    # mask_specificity: the two informed iterations (2, 3), not before
    history = runner.message_hub.get_scalar('train/mask_specificity')
    assert len(history.data[0]) == 2
    assert all(0 <= v <= 2 for v in history.data[0])
    log = open(glob.glob(osp.join(work, '*', '*.log'))[0]).read()
    warned = [line for line in log.splitlines() if 'near-uniform' in line]
    assert len(warned) == 1, warned  # one pass, one warning
    assert 'A(XW^V) of encoder block -2' in warned[0]
    assert 'in 100.0% of 16 images' in warned[0]
    assert 'mask_specificity' in log
