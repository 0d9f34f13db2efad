"""MLO-MAE masking networks: registry, top-k masks, probabilities, sizes."""
import pytest
import torch

from mlmask_mm.models.maskers import (MLOMLPMasker, MLOTokenMasker,
                                      num_visible)
from mlmask_mm.registry import MODELS

L, D = 16, 8


def build(kind, **kwargs):
    if kind == 'mlp':
        cfg = dict(type='MLOMLPMasker', num_patches=L, embed_dims=D,
                   hidden_dims=12)
    else:
        cfg = dict(type='MLOTokenMasker', embed_dims=D, hidden_dims=6)
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.mark.parametrize('kind', ['mlp', 'token'])
@pytest.mark.parametrize('ratio', [0.75, 0.6, 0.5])
def test_top_k_of_the_probabilities(kind, ratio):
    torch.manual_seed(0)
    masker = build(kind, mask_ratio=ratio)
    tokens = torch.randn(3, L, D)
    res = masker(tokens)
    keep = num_visible(L, ratio)
    assert res.ids_keep.shape == (3, keep)
    assert res.ids_restore.shape == (3, L)
    # exactly L - int(L (1 - r)) masked in every image
    assert (res.mask.sum(1) == L - keep).all()
    p = masker.probabilities(tokens)
    torch.testing.assert_close(res.scores, p)
    assert ((p > 0) & (p < 1)).all()
    for b in range(3):
        masked, visible = p[b][res.mask[b] == 1], p[b][res.mask[b] == 0]
        assert masked.min() >= visible.max()  # the highest p are masked
        assert set(res.ids_keep[b].tolist()) == set(
            (res.mask[b] == 0).nonzero().flatten().tolist())
    # keep-first shuffle undone by ids_restore (MAE's convention)
    ids_shuffle = torch.argsort(res.ids_restore, 1)
    assert torch.equal(ids_shuffle[:, :keep], res.ids_keep)
    # deterministic: no randomness involved
    res2 = masker(tokens)
    assert torch.equal(res.mask, res2.mask)
    assert torch.equal(res.ids_keep, res2.ids_keep)


@pytest.mark.parametrize('kind', ['mlp', 'token'])
def test_scores_carry_the_masker_gradient_input_detached(kind):
    masker = build(kind)
    tokens = torch.randn(2, L, D, requires_grad=True)
    res = masker(tokens)
    (res.scores * torch.randn(2, L)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in masker.parameters())
    assert tokens.grad is None  # detached by default
    attached = build(kind, detach_input=False)
    tokens = torch.randn(2, L, D, requires_grad=True)
    attached(tokens).scores.sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


def test_paper_network_size():
    """L·D·512 + 512·(L + 1) + L: ~77.2 M at ViT-B/16 224 px, ~100.8 M at
    ViT-B patch 2 on 32 px (built on the meta device: no memory)."""
    with torch.device('meta'):
        vitb = MLOMLPMasker(num_patches=196, embed_dims=768)
        cifar = MLOMLPMasker(num_patches=256, embed_dims=768)
        light = MLOTokenMasker(embed_dims=768)
        light_big = MLOTokenMasker(embed_dims=768)
    n = sum(p.numel() for p in vitb.parameters())
    assert n == 196 * 768 * 512 + 512 * 197 + 196 == 77_171_396
    assert sum(p.numel() for p in cifar.parameters()) == 100_795_136
    n_light = sum(p.numel() for p in light.parameters())
    assert n_light == 768 * 128 + 2 * 128 + 2 * 768 + 1
    assert n_light == sum(p.numel() for p in light_big.parameters())


def test_light_masker_scales_to_large_grids():
    masker = build('token')
    res = masker(torch.randn(2, 1024, D))
    assert (res.mask.sum(1) == 1024 - num_visible(1024, 0.75)).all()


def test_bad_shapes_and_settings():
    with pytest.raises(ValueError, match='num_patches=16'):
        build('mlp')(torch.randn(2, 9, D))
    with pytest.raises(ValueError, match='embed_dims=8'):
        build('token')(torch.randn(2, L, D + 1))
    with pytest.raises(ValueError, match='hidden_dims'):
        build('mlp', hidden_dims=0)
    with pytest.raises(ValueError, match='mask_ratio'):
        build('token', mask_ratio=1.0)
