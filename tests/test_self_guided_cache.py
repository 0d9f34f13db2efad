"""Self-Guided MAE's cached mode: crop/flip mapping, refresh hook, errors."""

import mmcv
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from mlmask_mm.datasets import SELF_GUIDED_META_KEYS
from mlmask_mm.models.maskers.relevance_cache import (RelevanceCache,
                                                      view_relevance)
from mlmask_mm.models.maskers.self_guided_masker import SelfGuidedMasker
from mlmask_mm.registry import TRANSFORMS

SIZE, PATCH = 32, 4  # model input 32 px, 8 x 8 patches
GRID = SIZE // PATCH


def patch_features(img: np.ndarray) -> torch.Tensor:
    """Centred pixel patches of a SIZE x SIZE image: 1 x L x (p² 3)."""
    x = torch.from_numpy(img.copy()).float() / 255
    x = x.reshape(GRID, PATCH, GRID, PATCH, 3).permute(0, 2, 1, 3, 4)
    x = x.reshape(1, GRID * GRID, -1)
    return x - x.mean(1, keepdim=True)


def pure_patches(img: np.ndarray) -> torch.Tensor:
    """Patches of one flat colour (not blended across a region edge)."""
    x = torch.from_numpy(img.copy()).float()
    x = x.reshape(GRID, PATCH, GRID, PATCH, 3).permute(0, 2, 1, 3, 4)
    return x.reshape(GRID * GRID, PATCH * PATCH, 3).std(1).amax(-1) < 1.0


def two_region_image() -> np.ndarray:
    """64 x 64: a flat background and a flat 24 x 24 "object" whose edges
    lie on the 8 px cells of the whole image's 8 x 8 patch grid."""
    img = np.empty((64, 64, 3), np.uint8)
    img[:] = (40, 90, 200)
    img[16:40, 8:32] = (230, 60, 20)
    return img


def test_view_relevance_identity_and_flips_by_hand():
    maps = torch.arange(2 * 4 * 4, dtype=torch.float64).reshape(2, 4, 4)
    whole = torch.tensor([[0., 0., 1., 1.]] * 2, dtype=torch.float64)
    none = torch.zeros(2, 2, dtype=torch.bool)
    out = view_relevance(maps, whole, none, (4, 4))
    torch.testing.assert_close(out, maps.flatten(1))
    flips = torch.tensor([[True, False], [True, True]])
    out = view_relevance(maps, whole, flips, (4, 4)).reshape(2, 4, 4)
    torch.testing.assert_close(out[0], maps[0].flip(-1))
    torch.testing.assert_close(out[1], maps[1].flip(-1).flip(-2))
    # the right half, 2 x 2 patches: cell centres 0.5 (x) map to x 0.625
    # of the image = column 2 of 4 (centre 0.625): exact cells again
    half = torch.tensor([[0.5, 0., 1., 1.]], dtype=torch.float64)
    out = view_relevance(maps[:1], half, none[:1], (4, 2)).reshape(4, 2)
    torch.testing.assert_close(out, maps[0][:, 2:])


def crops_with_the_object(n=3):
    """(seed, crop) pairs whose crop holds the object as the minority."""
    crop = TRANSFORMS.build(dict(
        type='RecordedRandomResizedCrop', scale=SIZE,
        crop_ratio_range=(0.3, 1.0), backend='pillow',
        interpolation='bicubic'))
    found = []
    for seed in range(200):
        np.random.seed(seed)
        r = crop(dict(img=two_region_image()))
        x0, y0, x1, y1 = r['crop_box']
        ox = max(0, min(x1, 32 / 64) - max(x0, 8 / 64))
        oy = max(0, min(y1, 40 / 64) - max(y0, 16 / 64))
        share = ox * oy / ((x1 - x0) * (y1 - y0))
        if 0.15 < share < 0.4:
            found.append(seed)
        if len(found) == n:
            return crop, found
    raise AssertionError('no crop found')


@pytest.mark.parametrize('direction', [None, 'horizontal', 'vertical'])
def test_cached_map_under_crop_and_flip_equals_map_of_the_view(direction):
    """Relevance of the whole image mapped through a recorded crop/flip ==
    relevance computed on the cropped/flipped image, on every patch of one
    flat colour (patches blended across the object's edge are left out)."""
    masker = SelfGuidedMasker(tol=1e-5, max_iters=500)
    img = two_region_image()
    whole = mmcv.imresize(img, (SIZE, SIZE), interpolation='bicubic',
                          backend='pillow')
    cache = RelevanceCache(1, (GRID, GRID))
    cache.store(torch.tensor([0]), masker.relevance(patch_features(whole)))
    flip = TRANSFORMS.build(dict(type='RandomFlip', prob=float(
        direction is not None), direction=direction or 'horizontal'))
    crop, seeds = crops_with_the_object()
    for seed in seeds:
        np.random.seed(seed)
        r = flip(crop(dict(img=img.copy())))
        view = r['img']
        sample = DataSample(metainfo=dict(
            sample_idx=0, crop_box=r['crop_box'], flip=r['flip'],
            flip_direction=r['flip_direction']))
        cached = cache.lookup([sample], (GRID, GRID), torch.device('cpu'))[0]
        direct = masker.relevance(patch_features(view))[0]
        pure = pure_patches(view)
        assert pure.sum() > GRID * GRID / 2

        def object_side(s):
            return s > (s.max() + s.min()) / 2

        assert 0 < object_side(direct).sum() < GRID * GRID / 2
        assert torch.equal(object_side(cached)[pure],
                           object_side(direct)[pure]), seed
        torch.testing.assert_close(cached[pure], direct[pure], atol=0.05,
                                   rtol=0)


def test_cached_masker_exact_counts_with_hints_and_bad_samples():
    masker = SelfGuidedMasker(mode='cached', hint_ratio=0.25)
    g = torch.Generator().manual_seed(0)
    masker.cache = RelevanceCache(5, (4, 4))
    masker.cache.store(torch.arange(5), torch.rand(5, 16, generator=g))
    samples = [DataSample(metainfo=dict(sample_idx=i, crop_box=(0, 0, 1, 1),
                                        flip=False, flip_direction=None))
               for i in (4, 0, 2)]
    from mlmask_mm.models.maskers.base import MaskContext
    ctx = MaskContext(patch_resolution=(4, 4), data_samples=samples)
    result = masker(torch.zeros(3, 16, 8), None, ctx)
    assert torch.all(result.mask.sum(-1) == 16 - 4)
    torch.testing.assert_close(result.scores,
                               masker.cache.maps[[4, 0, 2]].float().flatten(1))
    # hints: 3 of the 12 most relevant stay visible, the 3 least relevant
    # visible patches are masked instead
    top = result.scores.argsort(-1, descending=True)[:, :12]
    in_top = torch.zeros(3, 16, dtype=torch.bool).scatter_(1, top, True)
    assert torch.all((in_top & (result.mask == 0)).sum(-1) == 3)
    with pytest.raises(KeyError, match='crop_box'):
        masker(torch.zeros(1, 16, 8), None, MaskContext(
            (4, 4), [DataSample(metainfo=dict(sample_idx=0))]))
    empty = RelevanceCache(5, (4, 4))
    masker.cache = empty
    with pytest.raises(KeyError, match='no map for dataset indices'):
        masker(torch.zeros(3, 16, 8), None, ctx)
    masker.cache = None
    with pytest.raises(RuntimeError, match='SelfGuidedCacheHook'):
        masker(torch.zeros(3, 16, 8), None, ctx)
    with pytest.raises(ValueError, match='mode'):
        SelfGuidedMasker(mode='cache')


# ------------------------------------------------------------- the runner
def cached_config(image_folder, work_dir, max_iters=7, start=2, interval=2):
    from test_self_guided import sg_config
    cfg = sg_config(image_folder, work_dir, max_iters=max_iters, start=start)
    cfg.model.masker.maskers[1]['mode'] = 'cached'
    pipeline = cfg.train_dataloader.dataset.pipeline
    for t in pipeline:
        if t['type'] == 'RandomResizedCrop':
            t['type'] = 'RecordedRandomResizedCrop'
        if t['type'] == 'PackInputs':
            t['meta_keys'] = SELF_GUIDED_META_KEYS
    cfg.custom_hooks.append(dict(type='SelfGuidedCacheHook',
                                 interval=interval, by_epoch=False))
    return cfg


@pytest.mark.slow
def test_cached_mode_through_runner_refresh_interval_and_resume(
        image_folder, tmp_path, monkeypatch):
    from mmengine.runner import Runner
    from mlmask_mm.apis import prepare_config
    from mlmask_mm.engine.hooks import SelfGuidedCacheHook
    refreshed = []
    real_refresh = SelfGuidedCacheHook.refresh

    def spy(self, runner):
        refreshed.append(runner.iter)
        real_refresh(self, runner)

    monkeypatch.setattr(SelfGuidedCacheHook, 'refresh', spy)
    cfg = cached_config(image_folder, str(tmp_path / 'w'))
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.train()
    # informed from iteration index 2 on (start=2), then every 2 iterations
    assert refreshed == [2, 4, 6]
    masker = runner.model.masker
    cache = masker.maskers[1].cache
    assert int(masker.active) == 1 and cache.refreshes == 3
    assert bool(cache.filled.all()) and len(cache.filled) == 16
    # a training batch's masks come from the cache, mapped through its crops
    batch = next(iter(runner.train_dataloader))
    data = runner.model.data_preprocessor(batch, True)
    _, result = runner.model.mask(data['inputs'], data['data_samples'])
    assert torch.all(result.mask.sum(-1) == 16 - 4)
    torch.testing.assert_close(result.scores, cache.lookup(
        data['data_samples'], (4, 4), torch.device('cpu')))
    assert not any('cache' in k for k in runner.model.state_dict())
    # resume from iteration 4: the cache is recomputed before the first
    # informed iteration, the interval counts from there
    refreshed.clear()
    cfg = cached_config(image_folder, str(tmp_path / 'w'), max_iters=7)
    cfg.resume, cfg.load_from = True, str(tmp_path / 'w' / 'iter_4.pth')
    Runner.from_cfg(prepare_config(cfg)).train()
    assert refreshed == [4, 6]


@pytest.mark.slow
def test_cached_mode_bad_setups_fail_before_training(image_folder, tmp_path):
    from mmengine.runner import Runner
    from mlmask_mm.apis import prepare_config

    def fails(cfg, error, match):
        runner = Runner.from_cfg(prepare_config(cfg))
        with pytest.raises(error, match=match):
            runner.train()
        assert runner.iter == 0

    cfg = cached_config(image_folder, str(tmp_path / 'a'))
    cfg.custom_hooks = cfg.custom_hooks[:1]  # no SelfGuidedCacheHook
    fails(cfg, ValueError, 'add .*SelfGuidedCacheHook')
    cfg = cached_config(image_folder, str(tmp_path / 'b'))
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'] == 'RecordedRandomResizedCrop':
            t['type'] = 'RandomResizedCrop'
    fails(cfg, ValueError, 'one RecordedRandomResizedCrop')
    cfg = cached_config(image_folder, str(tmp_path / 'c'))
    cfg.train_dataloader.dataset.pipeline[-1].pop('meta_keys')
    fails(cfg, ValueError, r"lack \['crop_box'\]")
    cfg = cached_config(image_folder, str(tmp_path / 'd'))
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2, dataset=cfg.train_dataloader.dataset)
    fails(cfg, TypeError, 'BaseDataset')
    cfg = cached_config(image_folder, str(tmp_path / 'e'))
    cfg.model.masker.maskers[1]['mode'] = 'iteration'
    fails(cfg, TypeError, "mode='cached'")


@pytest.mark.parametrize('name', [
    'sg-mae_vit-tiny-p4_demo_cached.py',
    'sg-mae_vit-tiny-p2_cifar10_cached.py',
    'sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k_cached.py'
])
def test_cached_configs_build_and_record_crops(name, image_folder):
    import os.path as osp
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    from conftest import REPO
    from mlmask_mm.apis import check_config
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'sg_mae', name))
    check_config(cfg)
    assert cfg.model.masker.maskers[1].mode == 'cached'
    assert [h.type for h in cfg.custom_hooks][:2] == [
        'SelfGuidedStartHook', 'SelfGuidedCacheHook']
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert tuple(pipeline[-1].meta_keys) == SELF_GUIDED_META_KEYS
    # the pipeline on a generated image: the packed sample has its crop box
    with DefaultScope.overwrite_default_scope('mlmask_mm'):
        compose = Compose(pipeline)
    out = compose(dict(img_path=osp.join(image_folder, 'a', '0000.jpg'),
                       sample_idx=3))
    meta = out['data_samples'].metainfo
    x0, y0, x1, y1 = meta['crop_box']
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert meta['sample_idx'] == 3 and 'flip' in meta
    # the pipeline-size check knows the recording crop
    pipeline[1].scale = 48
    with pytest.raises(ValueError, match='pipeline makes'):
        check_config(cfg)


def _gather_worker(rank, world, init_file, out_file):
    import torch.distributed as dist
    from mlmask_mm.engine.hooks.self_guided_cache_hook import gather_shards
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    try:
        num = 5  # uneven shards: rank 0 holds 0, 2, 4; rank 1 holds 1, 3
        mine = torch.arange(rank, num, world)
        maps = (mine.float()[:, None, None] + torch.zeros(len(mine), 2, 2))
        indices, gathered = gather_shards(mine, maps.half(),
                                          -(-num // world))
        torch.save(dict(indices=indices, maps=gathered), f'{out_file}{rank}')
    finally:
        dist.destroy_process_group()


def test_gather_shards_across_two_gloo_processes(tmp_path):
    """Under DDP every rank ends up with all maps, each under its index."""
    import torch.multiprocessing as mp
    # fork: the children start with this process' imports (seconds, not
    # the tens of seconds of fresh interpreters)
    mp.start_processes(_gather_worker, args=(2, str(tmp_path / 'init'),
                                             str(tmp_path / 'out')),
                       nprocs=2, start_method='fork')
    for rank in range(2):
        got = torch.load(tmp_path / f'out{rank}', weights_only=True)
        assert sorted(got['indices'].tolist()) == [0, 1, 2, 3, 4]
        assert got['maps'].dtype == torch.float16
        for i, m in zip(got['indices'], got['maps']):
            assert torch.all(m == float(i))


@pytest.mark.parametrize('power_steps', [2, 3])
def test_fiedler_vector_with_power_steps_matches_scipy(power_steps):
    from mlmask_mm.models.maskers.self_guided_masker import (affinity,
                                                             fiedler_vector)
    from test_self_guided import clustered_features, scipy_fiedler
    W = affinity(clustered_features(seed=4)[0])
    y, iters = fiedler_vector(W, tol=1e-11, max_iters=3000,
                              power_steps=power_steps)
    assert iters < 3000
    for b in range(W.shape[0]):
        ref = scipy_fiedler(W[b])
        assert min((y[b] - ref).norm(), (y[b] + ref).norm()) < 1e-6


# ---------------------------------------- per-token exploitation rates
def test_per_token_rates_by_hand_and_uniform_attention():
    from mlmask_mm.engine.exploitation import exploitation_rates
    g = torch.Generator().manual_seed(5)
    A = torch.rand(2, 8, 8, generator=g, dtype=torch.float64).softmax(-1)
    mask = torch.tensor([[0., 1., 1., 1., 0., 1., 1., 1.]] * 2)
    V, M = [0, 4], [1, 2, 3, 5, 6, 7]
    sets = {'V': V, 'M': M}
    m, L = 0.75, 8
    out = exploitation_rates([A[:1], A[1:]], mask[:1], m, per_token=True)
    R = {(a, b): 1.0 for a in 'VM' for b in 'VM'}

    def r(attn, src, dst):  # (L/|src|) (1/|dst|) Σ_{i∈dst} Σ_{j∈src} A_ij
        return L / len(src) * sum(float(attn[i, j]) for i in dst
                                  for j in src) / len(dst)

    for layer in range(2):
        attn = A[layer]
        R = {(a, b): r(attn, sets[a], sets[b]) * R[(a, a)] +
             r(attn, sets[b], sets[b]) * R[(a, b)]
             for a in 'VM' for b in 'VM'}
        assert torch.isclose(out[layer]['R_VO'], torch.tensor(
            m * R[('V', 'M')] + (1 - m) * R[('V', 'V')], dtype=A.dtype))
        assert torch.isclose(out[layer]['R_MO'], torch.tensor(
            m * R[('M', 'M')] + (1 - m) * R[('M', 'V')], dtype=A.dtype))
    # uniform attention: the plain sum favours the 3x larger mask set,
    # per token it is a tie (R = 2^l for every pair)
    uniform = [torch.full((1, 8, 8), 1 / 8, dtype=torch.float64)] * 3
    plain = exploitation_rates(uniform, mask[:1], m)[-1]
    assert plain['R_MO'] > 1.5 * plain['R_VO']
    tokenwise = exploitation_rates(uniform, mask[:1], m, per_token=True)[-1]
    assert torch.isclose(tokenwise['R_MO'], tokenwise['R_VO'])
    assert torch.isclose(tokenwise['R_VV'], torch.tensor(8.,
                                                         dtype=A.dtype))


def test_hook_require_crossing_waits_for_a_check_below(image_folder,
                                                       tmp_path, monkeypatch):
    from mmengine.runner import Runner
    from mlmask_mm.apis import prepare_config
    from mlmask_mm.engine.hooks import self_guided_hook
    from test_self_guided import sg_config
    # (R_VO, R_MO): above at the first two checks (a tie at init is not a
    # signal), below at the third, above again at the fourth: switch there
    sequence = iter([(1.0, 1.0), (1.0, 1.1), (1.0, 0.9), (1.0, 1.0),
                     (1.0, 0.5)])
    seen = []

    def fake_measure(self, runner):
        assert self.rates == 'per_token'
        seen.append(int(self._maskers(runner).active))
        return next(sequence)

    monkeypatch.setattr(self_guided_hook.SelfGuidedStartHook, 'measure',
                        fake_measure)
    cfg = sg_config(image_folder, str(tmp_path / 'w'), max_iters=5,
                    rates='per_token', require_crossing=True)
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.train()
    assert seen == [0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match='rates'):
        self_guided_hook.SelfGuidedStartHook(rates='mean')


def test_cached_mode_refresh_interval_in_epochs(image_folder, tmp_path,
                                                monkeypatch):
    """Epoch-based loop (the configs' setting): informed from epoch 1, a
    refresh every 2 epochs -> refreshes at the start of epochs 1 and 3."""
    from mmengine.runner import Runner
    from mlmask_mm.apis import prepare_config
    from mlmask_mm.engine.hooks import SelfGuidedCacheHook
    refreshed = []
    real_refresh = SelfGuidedCacheHook.refresh

    def spy(self, runner):
        refreshed.append((runner.epoch, runner.iter))
        real_refresh(self, runner)

    monkeypatch.setattr(SelfGuidedCacheHook, 'refresh', spy)
    cfg = cached_config(image_folder, str(tmp_path / 'w'), start=1)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=4)
    cfg.train_dataloader.batch_size = 8
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10)
    cfg.log_processor = dict(by_epoch=True)
    cfg.custom_hooks[0].update(by_epoch=True, interval=1)
    cfg.custom_hooks[1].update(by_epoch=True, interval=2)
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.train()
    # 16 images, batch 8: 2 iterations per epoch
    assert refreshed == [(1, 2), (3, 6)]
