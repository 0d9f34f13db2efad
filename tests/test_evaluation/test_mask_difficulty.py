"""mlmask_mm/evaluation/mask_difficulty.py and its tool: where a masker's
masked patches stand in difficulty (CL-MAE's partner / adversary)."""
import json
import types

import pytest
import torch

from conftest import load_tool
from mlmask_mm.evaluation.mask_difficulty import (difficulty_stats,
                                                  reference_patch_loss)


def brute_force_auc(ell, mask):
    """P(ℓ_masked > ℓ_kept) + ½ P(=) per image by explicit loops, mean."""
    values = []
    for b in range(ell.shape[0]):
        wins = n = 0.
        for m in range(ell.shape[1]):
            for k in range(ell.shape[1]):
                if mask[b, m] == 1 and mask[b, k] == 0:
                    d = float(ell[b, m]) - float(ell[b, k])
                    wins += 1. if d > 0 else (0.5 if d == 0 else 0.)
                    n += 1
        values.append(wins / n)
    return sum(values) / len(values)


def test_stats_match_brute_force_with_ties():
    g = torch.Generator().manual_seed(0)
    ell = torch.randint(0, 5, (3, 10), generator=g).double()  # many ties
    mask = torch.zeros(3, 10)
    for b in range(3):
        mask[b, torch.randperm(10, generator=g)[:6]] = 1
    stats = difficulty_stats(ell, mask)
    assert stats['masked_harder'] == pytest.approx(
        brute_force_auc(ell, mask), abs=1e-12)
    m = mask.bool()
    assert stats['loss_masked'] == pytest.approx(float(ell[m].mean()))
    assert stats['loss_kept'] == pytest.approx(float(ell[~m].mean()))
    assert stats['images'] == 3


def test_hardest_masked_gives_one_easiest_gives_zero():
    ell = torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    order = ell.argsort(dim=1)
    hard = torch.zeros(4, 16).scatter(1, order[:, -12:], 1)
    easy = torch.zeros(4, 16).scatter(1, order[:, :12], 1)
    assert difficulty_stats(ell, hard)['masked_harder'] == 1.0
    assert difficulty_stats(ell, easy)['masked_harder'] == 0.0
    assert difficulty_stats(ell, hard)['masked_over_kept'] > 1 > \
        difficulty_stats(ell, easy)['masked_over_kept']


def test_unknown_difficulties_are_left_out_and_bad_input_refused():
    ell = torch.tensor([[1., 2., float('nan'), 4.]])
    mask = torch.tensor([[1., 0., 1., 0.]])
    # pairs (m=0: ℓ 1) vs kept ℓ 2 and 4: 0 wins; the NaN patch is ignored
    assert difficulty_stats(ell, mask)['masked_harder'] == 0.0
    with pytest.raises(ValueError, match='shape'):
        difficulty_stats(ell, mask[:, :3])
    with pytest.raises(ValueError, match='no image'):
        difficulty_stats(ell, torch.ones(1, 4))


def _stub_model(per_patch):
    """A model whose loss per patch is a fixed B x L tensor, whatever the
    mask: the reference must return it exactly where a patch was masked."""
    from mlmask_mm.models.maskers import RandomMasker
    B, L = per_patch.shape
    return types.SimpleNamespace(
        masker=RandomMasker(mask_ratio=0.5),
        backbone=types.SimpleNamespace(
            embed=lambda x: torch.zeros(B, L, 8)),
        reconstruct=lambda tokens, result: None,
        per_patch_loss=lambda pred, inputs: per_patch)


def test_reference_averages_masked_draws_only_and_keeps_rng():
    per_patch = torch.rand(2, 8, generator=torch.Generator().manual_seed(2))
    model = _stub_model(per_patch)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    many = reference_patch_loss(model, torch.zeros(2, 3, 8, 8), draws=40)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.testing.assert_close(many, per_patch.double())
    one = reference_patch_loss(model, torch.zeros(2, 3, 8, 8), draws=1)
    # one draw at r = 0.5: half the patches never masked -> unknown
    assert torch.isnan(one).sum(dim=1).tolist() == [4, 4]
    with pytest.raises(ValueError, match='draws'):
        reference_patch_loss(model, torch.zeros(2, 3, 8, 8), draws=0)


def test_tool_on_cl_mae_checkpoints(tmp_path):
    from test_cl_mae import cl_checkpoint
    cfg_path, ckpt = cl_checkpoint(tmp_path)
    tool = load_tool('analysis_tools/mask_difficulty')
    out = str(tmp_path / 'd.json')
    rows = tool.main([cfg_path, ckpt, ckpt, '--num-images', '6',
                      '--draws', '4', '--out', out])
    assert len(rows) == 2 and rows[1]['same_as_previous'] == 1.0
    assert rows[0]['curriculum'] == -0.5
    assert 0 <= rows[0]['masked_harder'] <= 1
    assert rows[0]['masked_harder'] == rows[1]['masked_harder']
    assert json.load(open(out))['rows'][0]['images'] == 6
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        tool.main([cfg_path, str(tmp_path / 'missing.pth')])


def test_per_patch_loss_is_the_official_per_patch_mean():
    """ℓ_bi = mean over the patch's p²·3 values of (pred − target)², target
    the patchified image (norm_pix False), patches row-major: official
    ristea/cl-mae models_mae.py, forward_loss_mask (`loss.mean(dim=-1)`)
    and patchify; the per-patch loss of mask_difficulty and CL-MAE."""
    from test_cl_mae import build_model
    model, _ = build_model()
    assert model.head.norm_pix is False
    g = torch.Generator().manual_seed(3)
    imgs = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
    pred = torch.randn(2, 16, 48, generator=g, dtype=torch.float64)
    p, h = 4, 4
    target = imgs.reshape(2, 3, h, p, h, p).permute(0, 2, 4, 3, 5, 1) \
        .reshape(2, h * h, p * p * 3)
    expected = ((pred - target)**2).mean(dim=-1)
    torch.testing.assert_close(model.per_patch_loss(pred, imgs), expected)
