"""Self-Guided MAE's math: exploitation-rate rollout, Ncut solver, graph
features, relevance ranking and hints (docs/self_guided_mae.md)."""
import dataclasses
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from mlmask_mm.models.maskers import InformedMaskContext, MaskContext
from mlmask_mm.models.maskers.self_guided_masker import (SelfGuidedMasker,
                                                         informed_ranking)
from mlmask_mm.models.utils.exploitation import exploitation_rates
from mlmask_mm.models.utils.self_guided_ncut import (
    affinity, fiedler_vector, fiedler_vector_exact, mean_token_cosine,
    object_relevance, spectrum_floor)
from mlmask_mm.registry import MODELS


# ------------------------------------------------------ exploitation rates
def random_attention(B, L, layers, seed):
    g = torch.Generator().manual_seed(seed)
    return [(3 * torch.randn(B, L, L, generator=g, dtype=torch.float64))
            .softmax(-1) for _ in range(layers)]


def random_masks(B, L, num_mask, seed):
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(B, L, generator=g).argsort(-1)
    return torch.zeros(B, L).scatter_(1, order[:, :num_mask], 1.0)


def test_rollout_conserves_mass_and_stays_in_unit_interval():
    B, L = 5, 16
    mask = random_masks(B, L, 12, seed=0)
    out = exploitation_rates(random_attention(B, L, 8, seed=1), mask)
    assert len(out) == 8
    for layer in out:
        torch.testing.assert_close(layer['R_VO'] + layer['R_MO'],
                                   torch.ones(B, dtype=torch.float64))
        for b in 'VM':  # each column of the rollout sums to 1
            torch.testing.assert_close(layer[f'R_V{b}'] + layer[f'R_M{b}'],
                                       torch.ones(B, dtype=torch.float64))
        for value in layer.values():
            assert bool(((value >= 0) & (value <= 1)).all())


def test_rollout_of_special_attentions():
    B, L, m = 3, 16, 0.75
    mask = random_masks(B, L, 12, seed=2)
    eye = [torch.eye(L, dtype=torch.float64).expand(B, L, L)] * 4
    last = exploitation_rates(eye, mask)[-1]
    torch.testing.assert_close(last['R_MO'],
                               torch.full((B, ), m, dtype=torch.float64))
    # uniform attention over 8 layers (eq. 6 applied to A = B pairs with
    # R^(0) = 1 gave R_MO = 23.1 here): the share of mask tokens, m
    uniform = [torch.full((B, L, L), 1 / L, dtype=torch.float64)] * 8
    last = exploitation_rates(uniform, mask)[-1]
    torch.testing.assert_close(last['R_MO'],
                               torch.full((B, ), m, dtype=torch.float64))
    # every query attends to visible keys only: nothing comes from M
    to_visible = (1 - mask).unsqueeze(1).expand(B, L, L).double()
    to_visible = to_visible / to_visible.sum(-1, keepdim=True)
    last = exploitation_rates([to_visible] * 3, mask)[-1]
    torch.testing.assert_close(last['R_MO'],
                               torch.zeros(B, dtype=torch.float64))
    torch.testing.assert_close(last['R_VO'],
                               torch.ones(B, dtype=torch.float64))


def test_rollout_of_a_hand_built_two_layer_case():
    # 4 tokens: V = {0, 1}, M = {2, 3}, m = 1/2; rows are queries
    A1 = torch.tensor([[0.4, 0.2, 0.3, 0.1],
                       [0.1, 0.5, 0.2, 0.2],
                       [0.3, 0.1, 0.4, 0.2],
                       [0.3, 0.3, 0.1, 0.3]], dtype=torch.float64)
    A2 = torch.tensor([[0.25, 0.25, 0.25, 0.25],
                       [0.7, 0.1, 0.1, 0.1],
                       [0.1, 0.1, 0.1, 0.7],
                       [0.0, 0.2, 0.3, 0.5]], dtype=torch.float64)
    mask = torch.tensor([[0., 0., 1., 1.]])
    out = exploitation_rates([A1[None], A2[None]], mask)
    # by hand, r_{C→B} = (1/|B|) Σ_{i∈B} Σ_{j∈C} A_ij:
    # layer 1: r_VV = .6, r_MV = .4, r_VM = .5, r_MM = .5 and R^(1) = r
    # layer 2: r_VV = .65, r_MV = .35, r_VM = .2, r_MM = .8
    # R^(2)_{A→B} = Σ_C r_{C→B} R^(1)_{A→C}:
    #   R_VV = .65*.6 + .35*.5 = .565   R_VM = .2*.6 + .8*.5 = .52
    #   R_MV = .65*.4 + .35*.5 = .435   R_MM = .2*.4 + .8*.5 = .48
    # R_VO = (R_VM + R_VV)/2, R_MO = (R_MM + R_MV)/2
    expected = [dict(R_VV=.6, R_VM=.5, R_MV=.4, R_MM=.5, R_VO=.55,
                     R_MO=.45),
                dict(R_VV=.565, R_VM=.52, R_MV=.435, R_MM=.48, R_VO=.5425,
                     R_MO=.4575)]
    for layer, want in zip(out, expected):
        for key, value in want.items():
            assert abs(float(layer[key]) - value) < 1e-12, (key, layer[key])


def test_rollout_drops_the_class_token_and_renormalises():
    """Attention to the class token is left out: rows renormalised over
    the patch keys (so the rates still conserve mass)."""
    mask = torch.tensor([[0., 1., 1., 1.]])
    A = torch.rand(1, 4, 4, dtype=torch.float64) * 0.5  # rows sum < 1
    out = exploitation_rates([A], mask)[0]
    torch.testing.assert_close(out['R_VO'] + out['R_MO'],
                               torch.ones(1, dtype=torch.float64))


# ------------------------------------------------------------ Ncut solver
def scipy_fiedler(W: torch.Tensor) -> torch.Tensor:
    """Reference: the eigenvector of the 2nd smallest λ of
    (D − W) y = λ D y (eq. 4), by scipy."""
    w = W.double().numpy()
    D = np.diag(w.sum(1))
    _, vecs = scipy.linalg.eigh(D - w, D)
    y = torch.from_numpy(vecs[:, 1])
    return y / y.norm()


def planted(B, L, C, separation, seed, share=0.4, dtype=torch.float64):
    """Two clusters of token features at ``separation`` apart (unit noise);
    small separations give a small spectral gap."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, C, generator=g, dtype=torch.float64)
    centres = centres / centres.norm(dim=-1, keepdim=True) * separation
    labels = (torch.rand(B, L, generator=g) < share).long()
    base = torch.randn(C, generator=g, dtype=torch.float64)
    x = base + centres[labels] + torch.randn(B, L, C, generator=g,
                                             dtype=torch.float64)
    return x.to(dtype), labels


def agreement(a, b):
    same = (a == b).double().mean(-1)
    return torch.maximum(same, 1 - same)


def split(y):
    return y > y.mean(-1, keepdim=True)


def test_fiedler_vector_matches_scipy_in_float64():
    feats, _ = planted(3, 49, 12, 6.0, seed=0)
    W = affinity(feats)
    y, log = fiedler_vector(W, tol=1e-11, max_iters=5000, patience=None)
    assert bool(log.converged.all()) and not bool(log.hit_cap.any())
    for b in range(W.shape[0]):
        ref = scipy_fiedler(W[b])
        assert min((y[b] - ref).norm(), (y[b] + ref).norm()) < 1e-6


@pytest.mark.parametrize('separation,min_agree,more_than_100', [
    (8.0, 1.0, False),    # clear clusters
    (2.5, 0.97, True),    # weak gap: needs more than 100 products
])
def test_fiedler_vector_at_production_settings(separation, min_agree,
                                               more_than_100):
    """fp32, L = 196 (ViT-B/16), the default tol / cap / patience."""
    feats, labels = planted(16, 196, 64, separation, seed=1,
                            dtype=torch.float32)
    W = affinity(feats)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no "unconverged" warning
        y, log = fiedler_vector(W)
    ref = torch.stack([scipy_fiedler(W[b]) for b in range(16)])
    agree = agreement(split(y), split(ref))
    assert float(agree.min()) >= min_agree, agree
    assert float(agree.mean()) >= 0.99
    # the log: every image stopped on its own, none at the cap
    assert not bool(log.hit_cap.any())
    assert bool((log.converged | log.stable).all())
    assert bool((log.products <= 500).all())
    assert bool((log.products > 100).any()) == more_than_100
    summary = log.summary()
    assert summary['cap_share'] == 0.0
    assert summary['converged_share'] + summary['stable_share'] == 1.0
    # as good as the exact solution at recovering the planted split
    exact = agreement(split(ref), labels.bool()).mean()
    ours = agreement(split(y), labels.bool()).mean()
    assert abs(float(exact - ours)) < 0.01


def test_fiedler_vector_warns_and_logs_when_the_cap_is_hit():
    feats, _ = planted(8, 196, 64, 2.0, seed=1, dtype=torch.float32)
    with pytest.warns(RuntimeWarning, match='unconverged'):
        _, log = fiedler_vector(affinity(feats), max_iters=100)
    assert bool(log.hit_cap.any())
    assert bool((log.products[log.hit_cap] == 100).all())
    assert log.summary()['cap_share'] == float(log.hit_cap.float().mean())


def test_fiedler_vector_stops_each_image_on_its_own():
    """A batch of an easy and a hard graph: the easy one stops early."""
    easy, _ = planted(1, 196, 64, 8.0, seed=3, dtype=torch.float32)
    hard, _ = planted(1, 196, 64, 2.5, seed=1, dtype=torch.float32)
    _, log = fiedler_vector(affinity(torch.cat([easy, hard])))
    assert int(log.products[0]) < int(log.products[1])


def test_ncut_recovers_two_flat_regions():
    """An image of two flat regions (with a little noise) splits in two."""
    g = torch.Generator().manual_seed(0)
    B, h, w, p = 2, 8, 8, 4
    region = torch.zeros(B, h, w, dtype=torch.bool)
    region[0, :, :3] = True           # left strip
    region[1, 2:6, 2:6] = True        # centred square ("object")
    colours = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.3, 0.8]])
    pix = torch.where(region[..., None], colours[0], colours[1])  # B h w 3
    patches = pix[..., None, :].expand(B, h, w, p * p, 3).reshape(
        B, h * w, -1)
    patches = patches + 0.05 * torch.randn(patches.shape, generator=g)
    patches = patches - patches.mean(dim=1, keepdim=True)  # centre features
    y, _ = fiedler_vector(affinity(patches.double()), tol=1e-8)
    truth = region.flatten(1)
    assert bool((agreement(split(y), truth) == 1.0).all())


def test_relevance_is_high_on_the_object_cluster():
    feats, _ = planted(3, 49, 12, 6.0, seed=0)
    y, _ = fiedler_vector(affinity(feats), tol=1e-10)
    rel = object_relevance(feats, y)
    side = split(y)
    anchor = y.abs().argmax(-1, keepdim=True)
    obj = side == torch.gather(side, 1, anchor)
    for b in range(feats.shape[0]):
        assert rel[b][obj[b]].min() > rel[b][~obj[b]].max()


def test_affinity_is_fully_connected_with_negatives_clamped():
    x = torch.tensor([[[1., 0.], [0.6, 0.8], [-1., 0.1], [0.1, 0.995]]],
                     dtype=torch.float64)
    W = affinity(x)  # default tau = 0
    cos = torch.nn.functional.normalize(x, dim=-1)
    cos = cos @ cos.transpose(1, 2)
    assert 0 < float(cos[0, 0, 3]) < 0.2  # an edge TokenCut's 0.2 drops
    torch.testing.assert_close(W[cos > 0], cos[cos > 0])  # kept as is
    assert bool((W[cos <= 0] == 1e-5).all())
    # the threshold option (TokenCut's tau): a 0.6 edge goes at tau = 0.7
    assert float(affinity(x, tau=0.7)[0, 0, 1]) == 1e-5
    # and SelfGuidedMAE builds its graph with tau = 0 by default
    assert tiny_sg().ncut['tau'] == 0.0


# -------------------------------------------------- features A(X W^V)
def tiny_sg(**kwargs):
    from test_masked_mae import model_cfg
    cfg = model_cfg(algorithm='SelfGuidedMAE', **kwargs)
    cfg['backbone']['arch'] = dict(embed_dims=32, num_layers=3, num_heads=2,
                                   feedforward_channels=64)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.double().eval()


@pytest.mark.parametrize('layer', [-2, 0])
def test_graph_features_are_the_attention_output_before_projection(layer):
    """X′ = A(X W^V) of block ``feature_layer`` (eq. 2), recomputed from the
    block's weights: heads of softmax(q kᵀ/√d) v, concatenated."""
    model = tiny_sg(feature_layer=layer)
    bb = model.backbone
    tokens = bb.embed(torch.randn(2, 3, 16, 16, dtype=torch.float64))
    got = model.token_features(tokens)
    x = torch.cat([(bb.cls_token + bb.pos_embed[:, :1]).expand(2, -1, -1),
                   tokens], 1)
    n = layer % len(bb.layers)
    for block in bb.layers[:n]:
        x = block(x)
    block = bb.layers[n]
    h = block.ln1(x)
    Wq, Wk, Wv = block.attn.qkv.weight.chunk(3)
    bq, bk, bv = block.attn.qkv.bias.chunk(3)
    heads, d = block.attn.num_heads, 32 // block.attn.num_heads
    out = []
    for i in range(heads):
        s = slice(i * d, (i + 1) * d)
        q = h @ Wq[s].T + bq[s]
        k = h @ Wk[s].T + bk[s]
        v = h @ Wv[s].T + bv[s]
        A = torch.softmax(q @ k.transpose(1, 2) / d**0.5, -1)
        out.append(A @ v)
    want = torch.cat(out, -1)[:, 1:]
    assert got.shape == (2, 16, 32)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the block-output option gives the residual stream instead
    model.options = dataclasses.replace(model.options, features='blocks')
    torch.testing.assert_close(model.token_features(tokens),
                               block(x)[:, 1:], rtol=1e-10, atol=1e-10)


# ------------------------------------------------------- ranking and hints
@pytest.mark.parametrize('hint_ratio,mode', [(0.0, 'uniform'),
                                             (0.1, 'uniform'),
                                             (0.25, 'relevance')])
def test_exact_counts_and_hints_inside_object_set(hint_ratio, mode):
    g = torch.Generator().manual_seed(3)
    B, L, num_mask = 4, 64, 48
    rel = torch.rand(B, L, generator=g)
    ranking = informed_ranking(rel, num_mask, hint_ratio, mode, generator=g)
    masked = ranking > 0.5
    assert torch.all(masked.sum(-1) == num_mask)
    top = rel.argsort(-1, descending=True)[:, :num_mask]
    in_top = torch.zeros(B, L, dtype=torch.bool).scatter_(1, top, True)
    n_hint = round(hint_ratio * num_mask)
    hints = in_top & ~masked  # revealed although among the most relevant
    assert torch.all(hints.sum(-1) == n_hint)
    fillers = masked & ~in_top  # the least relevant visible ones
    assert torch.all(fillers.sum(-1) == n_hint)
    if n_hint:
        least = rel.argsort(-1)[:, :n_hint]
        assert torch.equal(fillers, torch.zeros(B, L, dtype=torch.bool)
                           .scatter_(1, least, True))


def test_masker_ranks_the_given_relevance_only():
    masker = SelfGuidedMasker(mask_ratio=0.75)
    rel = torch.rand(3, 16)
    ctx = InformedMaskContext((4, 4), importance=rel, hint_ratio=0.0)
    result = masker(torch.zeros(3, 16, 8), None, ctx)
    assert torch.all(result.mask.sum(-1) == 12)
    top = rel.argsort(-1, descending=True)[:, :12]
    assert torch.equal(result.mask.gather(1, top), torch.ones(3, 12))
    assert torch.equal(result.scores, rel)
    with pytest.raises(ValueError, match='InformedMaskContext'):
        masker(torch.zeros(3, 16, 8), None, MaskContext((4, 4)))
    with pytest.raises(ValueError, match='hint_mode'):
        SelfGuidedMasker(hint_mode='top')


def test_informed_ranking_breaks_ties_at_random_not_by_index():
    """A constant relevance map (no Ncut split) must not mask the same
    positions in every image (a patch-index pattern); distinct values keep
    their order."""
    from mlmask_mm.models.maskers.self_guided_masker import informed_ranking
    g = torch.Generator().manual_seed(0)
    flat = torch.zeros(64, 16)
    masked = informed_ranking(flat, 12, 0.0, generator=g)
    assert (masked.sum(-1) == 12).all()
    # each position masked in about 12/16 of the images, not all or none
    share = masked.mean(0)
    assert share.min() > 0.4 and share.max() < 0.95
    rel = torch.arange(16.).repeat(3, 1)
    masked = informed_ranking(rel, 12, 0.0, generator=g)
    assert (masked[:, 4:] == 1).all() and (masked[:, :4] == 0).all()


# ------------------------------------------- near-uniform features (issue)
def offset_planted(B=8, L=196, C=64, cosine=0.998, seed=1):
    """Planted clusters (separation 8, unit noise) plus one shared offset
    whose size makes the mean token cosine ``cosine``: the near-uniform
    features of a small or briefly trained model."""
    feats, labels = planted(B, L, C, 8.0, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    offset = torch.randn(C, generator=g, dtype=torch.float64)
    offset = offset / offset.norm()
    lo, hi = 0.0, 1e4  # bisection on the offset's length
    for _ in range(60):
        mid = (lo + hi) / 2
        mean = float(mean_token_cosine(feats + mid * offset).mean())
        lo, hi = (mid, hi) if mean < cosine else (lo, mid)
    return feats + lo * offset, labels


def test_mean_token_cosine_and_spectrum_floor_by_brute_force():
    g = torch.Generator().manual_seed(0)
    # a shared offset: mostly positive cosines, some negative
    x = torch.randn(3, 20, 5, generator=g, dtype=torch.float64) + 1.2
    xn = x / x.norm(dim=-1, keepdim=True)
    for b in range(3):
        cos = xn[b] @ xn[b].T
        off = ~torch.eye(20, dtype=torch.bool)
        assert abs(float(mean_token_cosine(x)[b] - cos[off].mean())) < 1e-12
    # negative cosines are clamped: the floor is a lower bound of the
    # normalised adjacency's spectrum, above the trivial -1
    for tau in (0.0, 0.2):
        W = affinity(x, tau)
        d = W.sum(-1)
        A = W / (d.sqrt()[:, :, None] * d.sqrt()[:, None, :])
        lam_min = torch.linalg.eigvalsh(A)[:, 0]
        floor = spectrum_floor(x, W)
        assert bool((floor <= lam_min + 1e-12).all()), (floor, lam_min)
        assert bool((floor > -1).all())
    # nothing clamped (all cosines positive): the floor is 0
    feats, _ = offset_planted(B=2, L=30, C=8)
    assert torch.equal(spectrum_floor(feats, affinity(feats)),
                       torch.zeros(2, dtype=torch.float64))


def test_exact_fiedler_vector_matches_scipy():
    feats, _ = offset_planted(B=3, L=49, C=12)
    W = affinity(feats)
    y, log = fiedler_vector_exact(W)
    assert bool(log.converged.all()) and int(log.products.sum()) == 0
    for b in range(3):
        ref = scipy_fiedler(W[b])
        assert min((y[b] - ref).norm(), (y[b] + ref).norm()) < 1e-8


def test_solver_on_near_uniform_features_reaches_the_exact_cut():
    """Planted clusters + a shared offset, mean token cosine 0.998, fp32,
    L = 196, the defaults: the eigenvalues of A other than its top one lie
    within ~1e-3 of each other, so an absolute residual test stops after one
    product (56 % of eigh's split).  The scale-free stop and the spectrum
    floor reach eigh's split (≥ 95 % of the patches on every image)."""
    feats, labels = offset_planted()
    assert abs(float(mean_token_cosine(feats).mean()) - 0.998) < 1e-6
    x = feats.float()
    W = affinity(x)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no "unconverged" warning
        y, log = fiedler_vector(W, floor=spectrum_floor(x, W))
    ref = torch.stack([scipy_fiedler(W[b]) for b in range(len(W))])
    agree = agreement(split(y), split(ref))
    assert float(agree.min()) >= 0.95, agree
    assert bool((log.products > 3).all()) and not bool(log.hit_cap.any())
    assert float(agreement(split(ref), labels.bool()).mean()) > 0.99
    # the floor is what makes it fast: from -1 (A + I) the rate per product
    # is 1 - O(1e-3), and the same cap leaves the images unconverged (with
    # the warning), never "converged"
    with pytest.warns(RuntimeWarning, match='unconverged'):
        _, slow = fiedler_vector(W, patience=None)
    assert not bool(slow.converged.any()) and bool(slow.hit_cap.all())


def test_uniform_hints_ignore_relevance():
    """'uniform': every masked patch is equally likely to be a hint, however
    relevant; 'relevance' favours the relevant ones."""
    g = torch.Generator().manual_seed(0)
    B, L, num_mask = 4000, 16, 12
    # masked set = patches 4..15, relevance spanning three decades
    rel = torch.logspace(-3, 0, L).repeat(B, 1)
    share = {}
    for mode in ('uniform', 'relevance'):
        masked = informed_ranking(rel, num_mask, 0.25, mode, generator=g) > .5
        hinted = ~masked[:, 4:]  # revealed among the 12 most relevant
        assert bool((hinted.sum(-1) == 3).all())
        share[mode] = hinted.double().mean(0)  # per patch, expected 3/12
    assert float((share['uniform'] - 0.25).abs().max()) < 0.03, share
    assert float(share['relevance'][-1]) > 0.5 > float(share['relevance'][0])


def test_model_relevance_is_exact_on_near_uniform_features():
    """SelfGuidedMAE's two paths on near-uniform features (mean cosine
    0.998): the per-view solver (generation='iteration') reaches the exact
    path's object split, converged, and both normalised maps rank alike."""
    model = tiny_sg(ncut=dict(degenerate_cos=0.99))
    feats, _ = offset_planted(B=4)
    exact = model.relevance_from_features(feats, exact=True)
    assert bool(model.solver_log.converged.all())
    assert bool(model.degenerate.all())
    approx = model.relevance_from_features(feats.float())
    log = model.solver_log
    assert not bool(log.hit_cap.any()) and bool(log.converged.all())
    assert float(agreement(split(approx), split(exact)).min()) >= 0.95
