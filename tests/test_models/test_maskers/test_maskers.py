"""The masking interface and the non-learned maskers."""
import pytest
import torch
from mmpretrain.structures import DataSample

from mlmask_mm.models.maskers import (BlockMasker, CompositeMasker,
                                      GridMasker, MaskContext, MaskResult,
                                      RandomMasker, RegionMasker,
                                      mask_from_ranking)
from mlmask_mm.registry import MODELS


def check_result(res: MaskResult, B: int, L: int, ratio: float) -> None:
    """The invariants every masker must satisfy."""
    K = int(L * (1 - ratio))
    assert res.ids_keep.shape == (B, K)
    assert res.ids_restore.shape == (B, L)
    assert res.mask.shape == (B, L)
    # exactly L - K masked per image, kept ids are the zeros of the mask
    assert torch.all(res.mask.sum(1) == L - K)
    kept = torch.zeros(B, L).scatter_(1, res.ids_keep, 1.)
    assert torch.equal(kept, 1 - res.mask)
    # ids_restore inverts the keep-first order: visible first, then masked
    shuffled = torch.gather(res.mask, 1, torch.argsort(res.ids_restore, 1))
    assert torch.all(shuffled[:, :K] == 0) and torch.all(shuffled[:, K:] == 1)


def test_mask_from_ranking_keeps_smallest():
    ranking = torch.tensor([[0.9, 0.1, 0.5, 0.3]])
    res = mask_from_ranking(ranking, 2)
    assert res.ids_keep.tolist() == [[1, 3]]
    assert res.mask.tolist() == [[1., 0., 1., 0.]]


@pytest.mark.parametrize('masker', [
    RandomMasker(0.75),
    RandomMasker(0.6),
    BlockMasker(0.75),
    BlockMasker(0.4, min_block=2),
    GridMasker(stride=2),
    GridMasker(stride=3, random_offset=False),
])
def test_masker_invariants(masker):
    torch.manual_seed(0)
    B, h, w, D = 5, 6, 6, 8
    res = masker(torch.randn(B, h * w, D), None, MaskContext((h, w)))
    check_result(res, B, h * w, masker.mask_ratio)


def test_random_masker_matches_mae_random_masking():
    """Same RNG state → the same noise, masks and order as MAE's code."""
    tokens = torch.randn(3, 16, 4)
    torch.manual_seed(1)
    res = RandomMasker(0.75)(tokens)
    torch.manual_seed(1)
    noise = torch.rand(3, 16)
    ids_shuffle = torch.argsort(noise, dim=1)
    assert torch.equal(res.ids_keep, ids_shuffle[:, :4])
    assert torch.equal(res.ids_restore, torch.argsort(ids_shuffle, dim=1))


def test_grid_masker_keeps_one_in_four():
    res = GridMasker(stride=2, random_offset=False)(
        torch.zeros(1, 16, 2), None, MaskContext((4, 4)))
    grid = (1 - res.mask).view(4, 4)
    expected = torch.zeros(4, 4)
    expected[::2, ::2] = 1
    assert torch.equal(grid, expected)


def test_block_masker_masks_contiguous_blocks():
    """Block masks are far more clustered than random ones."""
    torch.manual_seed(0)
    ctx = MaskContext((14, 14))
    tokens = torch.zeros(16, 196, 2)

    def neighbour_agreement(mask):
        m = mask.view(-1, 14, 14)
        same = (m[:, 1:] == m[:, :-1]).float().mean() + \
            (m[:, :, 1:] == m[:, :, :-1]).float().mean()
        return same / 2

    block = neighbour_agreement(BlockMasker(0.5)(tokens, None, ctx).mask)
    rand = neighbour_agreement(RandomMasker(0.5)(tokens, None, ctx).mask)
    assert block > rand + 0.15


def test_region_masker_masks_given_region_first():
    h = w = 4
    region = torch.zeros(h, w)
    region[:2, :] = 1  # top half: 8 patches
    samples = [DataSample().set_mask(region) for _ in range(3)]
    ctx = MaskContext((h, w), data_samples=samples)
    # ratio 0.75 → 12 masked: the 8 region patches + 4 others
    res = RegionMasker(0.75)(torch.zeros(3, 16, 2), None, ctx)
    check_result(res, 3, 16, 0.75)
    assert torch.all(res.mask[:, :8] == 1)
    # ratio 0.25 → 4 masked, all inside the region
    res = RegionMasker(0.25)(torch.zeros(3, 16, 2), None, ctx)
    assert torch.all(res.mask[:, 8:] == 0)
    assert torch.equal(res.scores, region.flatten().expand(3, -1))


def test_region_masker_pixel_masks_and_errors():
    pixel = torch.zeros(16, 16)
    pixel[:, :8] = 1  # left half of the image
    ctx = MaskContext((4, 4), data_samples=[DataSample().set_mask(pixel)])
    res = RegionMasker(0.5)(torch.zeros(1, 16, 2), None, ctx)
    assert torch.equal(res.mask.view(4, 4)[:, :2], torch.ones(4, 2))
    with pytest.raises(ValueError, match='no `mask` field'):
        RegionMasker(0.5)(torch.zeros(1, 16, 2), None,
                          MaskContext((4, 4), data_samples=[DataSample()]))
    with pytest.raises(ValueError, match='data_samples'):
        RegionMasker(0.5)(torch.zeros(1, 16, 2))


def test_composite_masker_switch_and_random():
    comp = MODELS.build(
        dict(
            type='CompositeMasker',
            maskers=[
                dict(type='RandomMasker', mask_ratio=0.75),
                dict(type='GridMasker', stride=2, random_offset=False)
            ]))
    ctx = MaskContext((4, 4))
    tokens = torch.zeros(2, 16, 2)
    comp.set_active(1)
    grid = comp(tokens, None, ctx).mask
    assert torch.equal(grid[0], grid[1])  # fixed grid: same for all images
    assert comp.state_dict()['active'] == 1  # saved with checkpoints
    rand = MODELS.build(
        dict(type='CompositeMasker', mode='random', probs=[0.5, 0.5],
             maskers=[dict(type='RandomMasker'), dict(type='BlockMasker')]))
    check_result(rand(tokens, None, ctx), 2, 16, 0.75)
    with pytest.raises(ValueError, match='disagree on mask_ratio'):
        CompositeMasker([RandomMasker(0.5), RandomMasker(0.75)])


@pytest.mark.parametrize('ratio', [0, 1, 1.5, -0.1, '0.5'])
def test_bad_mask_ratio(ratio):
    with pytest.raises(ValueError, match=f'mask_ratio .*{ratio!r}'):
        RandomMasker(ratio)
