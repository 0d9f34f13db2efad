"""Self-Guided MAE's informed masker: Ncut solver, bi-partition, hints."""
import numpy as np
import pytest
import scipy.linalg
import torch

from mlmask_mm.models.maskers.self_guided_masker import (
    SelfGuidedMasker, affinity, fiedler_vector, informed_ranking,
    object_relevance)
from mlmask_mm.registry import MODELS


def scipy_fiedler(W: torch.Tensor) -> torch.Tensor:
    """Reference: eigenvector of the 2nd smallest λ of (D − W) y = λ D y."""
    w = W.numpy()
    D = np.diag(w.sum(1))
    _, vecs = scipy.linalg.eigh(D - w, D)
    y = torch.from_numpy(vecs[:, 1])
    return y / y.norm()


def clustered_features(B=3, L=49, C=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, C, generator=g, dtype=torch.float64) * 3
    labels = (torch.rand(B, L, generator=g) > 0.6).long()
    noise = torch.randn(B, L, C, generator=g, dtype=torch.float64)
    return centres[labels] + noise, labels


@pytest.mark.parametrize('kind', ['clustered', 'random'])
def test_fiedler_vector_matches_scipy_generalised_eigh(kind):
    if kind == 'clustered':
        feats, _ = clustered_features()
        W = affinity(feats)
    else:
        g = torch.Generator().manual_seed(1)
        W = affinity(torch.randn(3, 40, 8, generator=g, dtype=torch.float64),
                     tau=0.0)
    y, iters = fiedler_vector(W, tol=1e-11, max_iters=5000)
    assert iters < 5000
    for b in range(W.shape[0]):
        ref = scipy_fiedler(W[b])
        err = min((y[b] - ref).norm(), (y[b] + ref).norm())  # up to sign
        assert err < 1e-6, (b, float(err))


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
    y, _ = fiedler_vector(affinity(patches.double()), tol=1e-8,
                          max_iters=500)
    side = y > y.mean(-1, keepdim=True)
    truth = region.flatten(1)
    for b in range(B):
        agree = (side[b] == truth[b]).float().mean()
        assert max(agree, 1 - agree) == 1.0


def test_relevance_is_high_on_the_object_cluster():
    feats, labels = clustered_features()
    y, _ = fiedler_vector(affinity(feats), tol=1e-10, max_iters=1000)
    rel = object_relevance(feats, y)
    side = y > y.mean(-1, keepdim=True)
    anchor = y.abs().argmax(-1, keepdim=True)
    obj = side == torch.gather(side, 1, anchor)
    for b in range(feats.shape[0]):
        assert rel[b][obj[b]].min() > rel[b][~obj[b]].max()


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
    # the swapped-in patches are the least relevant visible ones
    fillers = masked & ~in_top
    assert torch.all(fillers.sum(-1) == n_hint)
    if n_hint:
        least = rel.argsort(-1)[:, :n_hint]
        assert torch.equal(fillers, torch.zeros(B, L, dtype=torch.bool)
                           .scatter_(1, least, True))


def test_masker_in_masked_mae_uses_model_features():
    from test_masked_mae import model_cfg
    model = MODELS.build(model_cfg(masker=dict(
        type='SelfGuidedMasker', mask_ratio=0.75, hint_ratio=0.1)))
    images = torch.randn(3, 3, 16, 16)
    _, result = model.mask(images)
    assert torch.all(result.mask.sum(-1) == 16 - 4)
    assert result.scores.shape == (3, 16)
    loss = model.loss(images, [])['loss']
    loss.backward()
    assert torch.isfinite(loss)
    assert model.masker.last_solver_iters >= 1
    with pytest.raises(ValueError, match='needs the model'):
        model.masker(torch.zeros(1, 16, 32))
    with pytest.raises(ValueError, match='hint_ratio'):
        SelfGuidedMasker(hint_ratio=1.0)


# ------------------------------------------------------ exploitation rates
def test_exploitation_rates_of_a_hand_built_attention():
    from mlmask_mm.engine.exploitation import exploitation_rates
    # 4 tokens: V = {0, 1}, M = {2, 3}; rows are queries
    A1 = torch.tensor([[0.4, 0.2, 0.3, 0.1],
                       [0.1, 0.5, 0.2, 0.2],
                       [0.3, 0.1, 0.4, 0.2],
                       [0.2, 0.2, 0.1, 0.5]], dtype=torch.float64)
    A2 = torch.tensor([[0.25] * 4,
                       [0.7, 0.1, 0.1, 0.1],
                       [0.1, 0.1, 0.1, 0.7],
                       [0.0, 0.2, 0.3, 0.5]], dtype=torch.float64)
    mask = torch.tensor([[0., 0., 1., 1.]])
    m = 0.5
    out = exploitation_rates([A1[None], A2[None]], mask, m)

    def r(A, src, dst):  # (1/|dst|) Σ_{i∈dst} Σ_{j∈src} A_ij
        return sum(A[i, j] for i in dst for j in src) / len(dst)

    V, M = [0, 1], [2, 3]
    sets = {'V': V, 'M': M}
    R = {(a, b): 1.0 for a in 'VM' for b in 'VM'}
    for layer, A in enumerate((A1, A2)):
        R = {(a, b): r(A, sets[a], sets[b]) * R[(a, a)] +
             r(A, sets[b], sets[b]) * R[(a, b)] for a in 'VM' for b in 'VM'}
        R_VO = m * R[('V', 'M')] + (1 - m) * R[('V', 'V')]
        R_MO = m * R[('M', 'M')] + (1 - m) * R[('M', 'V')]
        assert torch.isclose(out[layer]['R_VO'], torch.tensor(R_VO,
                             dtype=torch.float64))
        assert torch.isclose(out[layer]['R_MO'], torch.tensor(R_MO,
                             dtype=torch.float64))
    # layer 1 by hand: r_VV = (0.6 + 0.6)/2, r_MM = (0.6 + 0.6)/2 ...
    assert torch.isclose(out[0]['R_VV'], torch.tensor(1.2, dtype=torch.float64))


def test_recorded_attention_reproduces_the_block_output():
    """The recorded weights are the ones SDPA applied."""
    from test_masked_mae import model_cfg
    from mlmask_mm.models.algorithms.block_walk import walk_blocks
    model = MODELS.build(model_cfg())
    model.init_weights()
    model.eval()
    blocks = model.neck.decoder_blocks[:1]
    attn = blocks[0].attn
    x = torch.randn(2, 17, 16)
    w = walk_blocks(blocks, x, return_attention=True).attention[0]
    assert w.shape == (2, 17, 17)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 17))
    # with one head the average is the attention itself: A v, projected,
    # must be the attention module's SDPA output
    attn.num_heads, attn.head_dims = 1, attn.embed_dims
    walk = walk_blocks(blocks, x, return_attention=True, return_values=True)
    h = blocks[0].ln1(x)
    v = attn.qkv(h)[..., 2 * attn.embed_dims:]
    torch.testing.assert_close(walk.values[0], walk.attention[0] @ v,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn(h), attn.proj(walk.attention[0] @ v),
                               rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------- start hook
def sg_config(image_folder, work_dir, max_iters=6, **hook):
    from conftest import tiny_config
    cfg = tiny_config(image_folder, work_dir, max_iters=max_iters)
    cfg.model.masker = dict(
        type='CompositeMasker', mode='switch',
        maskers=[dict(type='RandomMasker', mask_ratio=0.75),
                 dict(type='SelfGuidedMasker', mask_ratio=0.75)])
    cfg.custom_hooks = [dict(type='SelfGuidedStartHook', by_epoch=False,
                             interval=1, num_images=4, **hook)]
    return cfg


def test_hook_switches_exactly_when_criterion_holds(image_folder, tmp_path,
                                                    monkeypatch):
    from mmengine.runner import Runner
    from mlmask_mm.engine.config_checks import prepare_config
    from mlmask_mm.engine.hooks import self_guided_hook
    # R_MO - R_VO after iterations 1, 2, 3, ...: crosses 0 at iteration 3
    sequence = iter([(1.0, 0.5), (1.0, 0.9), (1.0, 1.0), (1.0, 0.2)] + [
        (1.0, 0.0)] * 10)
    seen = []

    def fake_measure(self, runner):
        seen.append((runner.iter, int(self._maskers(runner).active)))
        return next(sequence)

    monkeypatch.setattr(self_guided_hook.SelfGuidedStartHook, 'measure',
                        fake_measure)
    cfg = sg_config(image_folder, str(tmp_path / 'w'), max_iters=5)
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.train()
    # measured after iterations 1..5 (runner.iter is the finished count - 1)
    assert [active for _, active in seen] == [0, 0, 0, 1, 1]
    assert int(runner.model.masker.active) == 1
    ckpt = torch.load(tmp_path / 'w' / 'iter_4.pth', weights_only=True)
    assert int(ckpt['state_dict']['masker.active']) == 1  # survives resume


def test_hook_fixed_start_and_real_rates_through_runner(image_folder,
                                                        tmp_path):
    from mmengine.runner import Runner
    from mlmask_mm.engine.config_checks import prepare_config
    cfg = sg_config(image_folder, str(tmp_path / 'w'), max_iters=4, start=2,
                    hint_ratio=(0.2, 0.0))
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.train()
    hub = runner.message_hub
    assert int(runner.model.masker.active) == 1
    r_vo = hub.get_scalar('train/sg_R_VO').current()
    r_mo = hub.get_scalar('train/sg_R_MO').current()
    assert r_vo > 0 and r_mo > 0
    assert 0 <= hub.get_scalar('train/sg_hint_ratio').current() < 0.2
    # resume from iteration 2 continues with informed masks
    cfg = sg_config(image_folder, str(tmp_path / 'w'), max_iters=4, start=2)
    cfg.resume, cfg.load_from = True, str(tmp_path / 'w' / 'iter_2.pth')
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.call_hook('before_run')
    runner.load_or_resume()
    assert int(runner.model.masker.active) == 1


def test_sg_configs_build():
    import os.path as osp
    from mmengine.config import Config
    from conftest import REPO
    from mlmask_mm.engine.config_checks import check_config
    for name in ('sg-mae_vit-tiny-p4_demo.py',
                 'sg-mae_vit-tiny-p2_cifar10.py',
                 'sg-mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', 'sg_mae', name))
        check_config(cfg)
        assert cfg.model.masker.maskers[1].type == 'SelfGuidedMasker'
        assert cfg.custom_hooks[0].type == 'SelfGuidedStartHook'
        assert 'RandomMasker' in str(cfg.model.masker.maskers[0])
