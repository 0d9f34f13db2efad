"""CL-MAE's masking-module objective against the official code, and the
behaviour the paper shows (curriculum direction, KL and diversity terms).

The reference is the official implementation, github.com/ristea/cl-mae at
commit b6c6347 (``models_mae.py``, ``engine_pretrain.py``,
``main_pretrain.py``); the expected values below are written from its
formulas in float64, independently of ``mlmask_mm``'s loss functions.
Tiny ViTs on random images, CPU.
"""
import math

import pytest
import torch
from torch import nn

from mlmask_mm.models.algorithms.cl_mae import CLMAE
from mlmask_mm.models.losses import (masking_module_loss,
                                     soft_reconstruction_loss)
from mlmask_mm.models.maskers import CurriculumMasker
from mlmask_mm.models.maskers.base import BaseMasker, mask_from_ranking
from test_cl_mae import build_model

# main_pretrain.py, get_args_parser: --lambda_gauss 1.0, --lambda_kl 0.1,
# --lambda_diversity 2.0, --mask_ratio 0.75
LAMBDA_GAUSS, LAMBDA_KL, LAMBDA_DIV, MASK_RATIO = 1.0, 0.1, 2.0, 0.75


@pytest.fixture(autouse=True)
def _one_thread(_torch_threads):
    """Tiny tensors: more threads only add overhead (after conftest's)."""
    torch.set_num_threads(1)


def official_module_loss(s, ell, c):
    """L_mask of the official code, in float64 Python arithmetic.

    s, ell: B x L nested lists (scores, per-patch losses); c: curriculum.
    """
    B, L = len(s), len(s[0])
    # models_mae.py l. 368-370 (forward_loss_mask):
    #   mm = 1 - masking_output; (loss * mm).sum() / mm.sum()
    num = sum((1 - s[b][i]) * ell[b][i] for b in range(B) for i in range(L))
    den = sum(1 - s[b][i] for b in range(B) for i in range(L))
    rec = num / den
    # models_mae.py l. 133-134: alpha = -1 / (0.12 * 0.12 * 2),
    # beta = 1 / (0.12 * sqrt(2 pi)); l. 373:
    #   lambda_gauss * (exp(alpha * (s - 0.5)**2) / beta).mean()
    alpha = -1 / (0.12 * 0.12 * 2)
    beta = 1 / (0.12 * math.sqrt(2 * math.pi))
    gauss = LAMBDA_GAUSS * sum(
        math.exp(alpha * (s[b][i] - 0.5)**2) / beta for b in range(B)
        for i in range(L)) / (B * L)
    # models_mae.py l. 162-165: kl_divergence(p, q) = sum(p log(p / q),
    # dim=-1) over the batch vector p; l. 375: lambda_kl * (
    #   kl_divergence(s.mean(-1), 0.25) + kl_divergence((1-s).mean(-1), 0.75))
    p = [sum(row) / L for row in s]
    kl = LAMBDA_KL * (sum(pb * math.log(pb / 0.25) for pb in p) +
                      sum((1 - pb) * math.log((1 - pb) / 0.75) for pb in p))
    # models_mae.py l. 31-53 (DiversityLoss, scale_factor 0.1): the sum over
    # pairs i < j of exp(-||s_i - s_j|| * 0.1) / (n (n - 1) / 2); l. 377
    pairs = [(a, b) for a in range(B) for b in range(a + 1, B)]
    div = LAMBDA_DIV * sum(
        math.exp(-math.dist(s[a], s[b]) * 0.1) for a, b in pairs) / len(pairs)
    # engine_pretrain.py l. 78:
    #   loss = curriculum_factor * loss_recon + loss_gauss + loss_kl
    #          + loss_diversity
    return c * rec + gauss + kl + div, dict(rec=rec, gauss=gauss, kl=kl,
                                            div=div)


# ------------------------------------------- the objective, term by term
@pytest.mark.parametrize('c', [1.0, 0.3, -1.0])
def test_module_loss_equals_the_official_code_float64(c):
    g = torch.Generator().manual_seed(0)
    # scores on both sides of 0.5 and near it (the bump matters there)
    s = torch.rand(5, 7, generator=g, dtype=torch.float64) * 0.9 + 0.05
    s[0, :3] = torch.tensor([0.5, 0.47, 0.55], dtype=torch.float64)
    ell = torch.rand(5, 7, generator=g, dtype=torch.float64) * 3
    expected, terms = official_module_loss(s.tolist(), ell.tolist(), c)
    # every CL-MAE config's loss settings (the published defaults)
    model, _ = build_model()
    assert model.loss_cfg == dict(lambda_bin=1.0, lambda_kl=0.1,
                                  lambda_div=2.0, sigma=0.12, kappa=0.1,
                                  kl_reduction='sum')
    out = masking_module_loss(soft_reconstruction_loss(ell, s), s, c,
                              MASK_RATIO, **model.loss_cfg)
    assert out['loss_masker'].dtype == torch.float64
    assert out['loss_masker'].item() == pytest.approx(expected, rel=1e-12)
    # the unweighted terms, for the log
    assert out['loss_rec_soft'].item() == pytest.approx(terms['rec'],
                                                        rel=1e-12)
    assert out['loss_bin'].item() == pytest.approx(terms['gauss'], rel=1e-12)
    assert out['loss_kl'].item() == pytest.approx(terms['kl'] / LAMBDA_KL,
                                                  rel=1e-12)
    assert out['loss_div'].item() == pytest.approx(terms['div'] / LAMBDA_DIV,
                                                   rel=1e-12)
    # the same with the function's own defaults
    assert masking_module_loss(
        soft_reconstruction_loss(ell, s), s, c,
        MASK_RATIO)['loss_masker'].item() == pytest.approx(expected,
                                                           rel=1e-12)


def test_kl_weight_grows_with_the_batch_as_published():
    """Σ over the per-GPU batch: B copies of one image's KL, not a mean."""
    one = torch.full((1, 8), 0.6, dtype=torch.float64)
    single = masking_module_loss(torch.zeros((), dtype=torch.float64), one,
                                 0.0, MASK_RATIO)['loss_kl']
    many = masking_module_loss(torch.zeros((), dtype=torch.float64),
                               one.repeat(64, 1), 0.0,
                               MASK_RATIO)['loss_kl']
    assert many.item() == pytest.approx(64 * single.item(), rel=1e-12)


# ------------------------------------------------- gradient through both
class FixedScores(BaseMasker):
    """A 'module' whose scores are one parameter: the module loss as a
    function of the scores alone."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__(mask_ratio=MASK_RATIO)
        self.s = nn.Parameter(scores.clone())

    def forward(self, tokens, images=None, context=None):
        return mask_from_ranking(-self.s.detach(),
                                 self.num_keep(tokens.shape[1]), self.s)


def test_gradient_reaches_scores_through_weight_and_token_scaling():
    """d L_rec^soft / d s of CLMAE.masker_loss equals float64 central
    differences: it flows through the (1 − s) weight *and* through the
    tokens scaled by s in the soft pass (cutting either fails)."""
    g = torch.Generator().manual_seed(0)
    s0 = torch.rand(2, 16, generator=g, dtype=torch.float64) * 0.8 + 0.1
    model, _ = build_model(masker=FixedScores(s0.float()))
    model = model.double()
    with torch.no_grad():
        model.masker.s.copy_(s0)
    x = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)

    def rec(scores=None):
        if scores is not None:
            with torch.no_grad():
                model.masker.s.copy_(scores)
        return model.masker_loss(x)['loss_rec_soft']

    loss = rec()
    (grad, ) = torch.autograd.grad(loss, model.masker.s)
    h = 1e-6
    fd = torch.zeros_like(s0)
    for b in range(2):
        for i in range(16):
            e = torch.zeros_like(s0)
            e[b, i] = h
            with torch.no_grad():
                fd[b, i] = (rec(s0 + e) - rec(s0 - e)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-9)
    # both paths carry a sizeable share: the (1 − s) weight alone (ℓ
    # fixed) gives (L − ℓ_bi) / Σ(1 − s), the rest is the token scaling
    rec(s0)
    with torch.no_grad():
        tokens = model.backbone.embed(x)
        ell = model.per_patch_loss(model.soft_reconstruct(tokens, s0), x)
        weight_only = (soft_reconstruction_loss(ell, s0) - ell) / (1 -
                                                                    s0).sum()
    scaling = fd - weight_only
    assert weight_only.norm() > 0.2 * fd.norm()
    assert scaling.norm() > 0.2 * fd.norm()


# ------------------------------------------------- curriculum direction
@pytest.mark.parametrize('c', [1.0, -1.0])
def test_one_module_step_moves_soft_loss_with_the_curriculum(c):
    """c = +1 (partner): one module step lowers L_rec^soft of the batch;
    c = −1 (adversary): it raises it (the other terms switched off)."""
    model, optim = build_model(lambda_bin=0.0, lambda_kl=0.0, lambda_div=0.0,
                               masker_lr=1e-4)
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model.set_curriculum(c)
    with torch.no_grad():
        before = model.masker_loss(x)['loss_rec_soft'].item()
    log = model.masker_step(x, None, optim['masker'])
    assert log['loss_rec_soft'].item() == pytest.approx(before, rel=1e-6)
    with torch.no_grad():
        after = model.masker_loss(x)['loss_rec_soft'].item()
    assert (after - before) * c < 0, (before, after)


# ------------------------------------- KL: the mean score stays at 1 − r
def _score_means(lambda_kl, steps=110, B=64, seed=0):
    """Mean score after each module step at the published weights and lr
    (base lr 1e-3 x B / 256), c = +1 then −1, the official initialisation
    (mean score ≈ 0.5 at the start)."""
    model, optim = build_model(seed=seed, lambda_kl=lambda_kl,
                               masker_lr=1e-3 * B / 256)
    g = torch.Generator().manual_seed(seed)
    means = []
    for i in range(steps):
        model.set_curriculum(1.0 if i < steps // 2 else -1.0)
        x = torch.randn(B, 3, 16, 16, generator=g)
        model.masker_step(x, None, optim['masker'])
        with torch.no_grad():
            means.append(model.mask(x)[1].scores.mean().item())
    return means


@pytest.mark.slow
def test_kl_term_holds_the_mean_score_at_the_target():
    """64 images per process, published λ and lr: after 60 steps the mean
    score is within 0.05 of 1 − r = 0.25 for 50 module steps, across the
    switch from partner to adversary (step 55); without L_kl it never gets
    there."""
    held = _score_means(0.1)[60:]
    assert max(abs(m - 0.25) for m in held) < 0.05, held
    free = _score_means(0.0)[60:]
    assert min(abs(m - 0.25) for m in free) > 0.1, free


# --------------------------------------- L_div: no mode collapse with it
def test_without_l_div_the_official_head_gives_every_image_one_mask():
    """Supplementary Fig. 2: with the official head, without L_div the
    scores of different images draw together (small std over the batch);
    with it they spread."""
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    spread = {}
    for lambda_div in (0.0, 2.0):
        model, optim = build_model(lambda_div=lambda_div, masker_lr=1e-3)
        assert model.masker.head == 'token'
        for _ in range(40):
            model.masker_step(x, None, optim['masker'])
        with torch.no_grad():
            spread[lambda_div] = model.mask(x)[1].scores.std(0).mean().item()
    assert spread[0.0] < 0.06 and spread[2.0] > 0.15, spread


# ------------------------------------------------------- the scoring head
def test_official_head_is_linear_d_to_l_on_the_token():
    masker = CurriculumMasker(embed_dims=32, num_layers=5, num_patches=16)
    masker.init_weights()
    assert masker.head == 'token'
    assert [layer.attn.num_heads for layer in masker.layers] == [4] * 5
    assert tuple(masker.score_head.weight.shape) == (16, 32)
    tokens = torch.randn(3, 16, 32)
    s = masker.score(tokens)
    assert s.shape == (3, 16)
    # all L scores come from the token: the gradient of one score reaches
    # every patch token only through the blocks, and the head's row i
    # (patch i's weights) only gets gradient from s_i
    s[:, 5].sum().backward()
    rows = masker.score_head.weight.grad.abs().sum(1)
    assert rows[5] > 0 and torch.count_nonzero(rows) == 1
    with pytest.raises(ValueError, match='num_patches=16 but gets 9'):
        masker.score(torch.randn(1, 9, 32))
    with pytest.raises(ValueError, match="needs num_patches"):
        CurriculumMasker(embed_dims=32)
    with pytest.raises(ValueError, match='head must be one of'):
        CurriculumMasker(embed_dims=32, head='cls', num_patches=4)
    per_patch = CurriculumMasker(embed_dims=32, num_layers=1, head='patch')
    assert tuple(per_patch.score_head.weight.shape) == (1, 32)
    assert per_patch.score(torch.randn(2, 9, 32)).shape == (2, 9)


# ----------------------------------------------------- scores under bf16
def test_scores_are_float32_under_bf16_autocast():
    """bf16 ties would make the top-k pick by patch index: the score head
    runs in float32 under autocast, and the module step runs there."""
    model, optim = build_model()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        s = model.masker.score(model.backbone.embed(x))
        assert s.dtype == torch.float32
        # 16 distinct scores per image: no bf16 ties
        assert all(len(set(row)) == 16 for row in s.tolist())
        losses = model.masker_loss(x)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_masker'].dtype == torch.float32
    assert isinstance(model, CLMAE)
