"""Self-Guided MAE's relevance cache: the crop/flip mapping, lookups."""

import mmcv
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from mlmask_mm.models.utils.relevance_cache import (RelevanceCache,
                                                    view_relevance)
from mlmask_mm.models.utils.self_guided_ncut import (affinity, fiedler_vector,
                                                     object_relevance)
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


def relevance(features: torch.Tensor) -> torch.Tensor:
    y1, _ = fiedler_vector(affinity(features), tol=1e-5)
    return object_relevance(features, y1)


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
    img = two_region_image()
    whole = mmcv.imresize(img, (SIZE, SIZE), interpolation='bicubic',
                          backend='pillow')
    cache = RelevanceCache(1, (GRID, GRID))
    cache.store(torch.tensor([0]), relevance(patch_features(whole)))
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
        # the view reads S̃ (normalised per image): back to S to compare
        cached = cache.offset[0] + cache.scale[0] * cache.lookup(
            [sample], (GRID, GRID), torch.device('cpu'))[0]
        direct = relevance(patch_features(view))[0]
        pure = pure_patches(view)
        assert pure.sum() > GRID * GRID / 2

        def object_side(s):
            return s > (s.max() + s.min()) / 2

        assert 0 < object_side(direct).sum() < GRID * GRID / 2
        assert torch.equal(object_side(cached)[pure],
                           object_side(direct)[pure]), seed
        torch.testing.assert_close(cached[pure], direct[pure], atol=0.05,
                                   rtol=0)


def test_lookup_errors_and_state_round_trip():
    cache = RelevanceCache(5, (4, 4))
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 16, generator=g)
    cache.store(torch.arange(4), maps)
    ok = DataSample(metainfo=dict(sample_idx=1, crop_box=(0, 0, 1, 1),
                                  flip=False))
    torch.testing.assert_close(
        cache.lookup([ok], (4, 4), torch.device('cpu')),
        (maps[1:2] - maps[1].min()) / (maps[1].max() - maps[1].min()),
        atol=1e-3, rtol=0)
    with pytest.raises(KeyError, match='crop_box'):
        cache.lookup([DataSample(metainfo=dict(sample_idx=0))], (4, 4),
                     torch.device('cpu'))
    missing = DataSample(metainfo=dict(sample_idx=4, crop_box=(0, 0, 1, 1)))
    with pytest.raises(KeyError, match=r'no map for dataset indices \[4\]'):
        cache.lookup([missing], (4, 4), torch.device('cpu'))
    cache.generated_at = 7
    back = RelevanceCache.from_state(cache.state())
    for k, v in cache.state().items():
        assert torch.equal(back.state()[k], v), k
    assert back.generated_at == 7


def test_near_uniform_relevance_keeps_its_order():
    """Relevance of near-uniform features spans ~1e-4 around 1.0 (the CPU
    demo): float16 values of S would round a map to one or two levels.
    Normalised per image, every map keeps its patches' order, and S itself
    can be read back."""
    g = torch.Generator().manual_seed(0)
    S = 1 + 1e-4 * torch.rand(16, 64, generator=g, dtype=torch.float64)
    assert len(S.half().unique()) <= 2  # what float16 S would keep
    cache = RelevanceCache(16, (8, 8))
    cache.store(torch.arange(16), S)
    whole = [DataSample(metainfo=dict(sample_idx=i, crop_box=(0, 0, 1, 1)))
             for i in range(16)]
    got = cache.lookup(whole, (8, 8), torch.device('cpu'))
    for b in range(16):
        # no inversion: in the order of S, the stored values never decrease
        # (float16 of S̃ ties patches within 2^-11 of the map's range only)
        in_order = got[b][S[b].argsort()]
        assert bool((in_order.diff() >= 0).all()), b
        assert len(got[b].unique()) >= 60 and in_order[-1] == 1
    torch.testing.assert_close(cache.relevance(torch.arange(16)).double(),
                               S.view(16, 8, 8), atol=2e-7, rtol=0)
    # a constant map stays constant (no division by a zero range)
    cache.store(torch.tensor([0]), torch.full((1, 64), 0.7))
    assert torch.equal(cache.relevance(torch.tensor([0])),
                       torch.full((1, 8, 8), 0.7))
