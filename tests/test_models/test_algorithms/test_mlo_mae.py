"""MLOMAE on a 2-block ViT: the three levels, their parts, the hypergradient
through outer_step against autograd through explicitly unrolled steps."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmpretrain.structures import DataSample
from torch import nn

from mlmask_mm.models.utils import hypergrad as hg
from mlmask_mm.models.losses import (per_patch_reconstruction_loss,
                                     probability_weighted_loss)
from mlmask_mm.registry import MODELS

from conftest import REPO, tiny_config

NUM_CLASSES = 3


def model_cfg(masker='MLOTokenMasker', **overrides):
    cfg = tiny_config('unused', 'unused')
    model = cfg.model.to_dict()
    model.update(
        type='MLOMAE',
        data_preprocessor=cfg.data_preprocessor.to_dict(),
        masker=dict(type=masker, mask_ratio=0.75, hidden_dims=16),
        downstream_head=dict(
            type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=32,
            loss=dict(type='CrossEntropyLoss')))
    model.update(overrides)
    return model


def build(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg(**kwargs))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 256, (n, 3, 16, 16), generator=g,
                           dtype=torch.uint8)
    samples = [DataSample().set_gt_label(int(i))
               for i in torch.randint(0, NUM_CLASSES, (n, ), generator=g)]
    return dict(inputs=inputs, data_samples=samples)


def optimizers(model, kind='adamw', lr=(1e-3, 1e-2, 1e-2)):
    wrappers = {}
    for (part, params), part_lr in zip(
            ((p, list(model.part_params(p).values()))
             for p in ('mae', 'head', 'masker')), lr):
        opt = (torch.optim.AdamW(params, lr=part_lr, betas=(0.9, 0.95))
               if kind == 'adamw' else torch.optim.SGD(params, lr=part_lr))
        wrappers[part] = OptimWrapper(opt)
    return OptimWrapperDict(**wrappers)


def snapshot(model):
    return {part: {n: p.detach().clone()
                   for n, p in model.part_params(part).items()}
            for part in ('mae', 'head', 'masker')}


def changed(before, model, part):
    now = model.part_params(part)
    return any(not torch.equal(before[part][n], now[n]) for n in now)


@pytest.mark.parametrize('masker,mode', [('MLOTokenMasker', 'exact'),
                                         ('MLOMLPMasker', 'finite_difference')])
def test_outer_steps_update_all_three_parts(masker, mode):
    model = build(masker=masker,
                  hypergrad=dict(mode=mode, unroll_steps=2, unroll='exact'))
    optim = optimizers(model)
    before = snapshot(model)
    for it in range(2):
        logs = model.outer_step([batch(seed=10 * it), batch(seed=10 * it + 1)],
                                batch(seed=100 + it), batch(seed=200 + it),
                                optim, update_masker=True)
    assert set(logs) >= {'loss_mae', 'loss_head', 'loss_val',
                         'hypergrad_norm', 'mask_prob_mean', 'mask_prob_std',
                         'mask_prob_masked', 'mask_prob_visible'}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in logs.values())
    assert logs['hypergrad_norm'] > 0
    # the masked patches are the ones with the highest probabilities
    assert logs['mask_prob_masked'] >= logs['mask_prob_visible']
    for part in ('mae', 'head', 'masker'):
        assert changed(before, model, part), part


def test_levels_touch_only_their_own_parts():
    model = build(hypergrad=dict(xi1=0.1, xi2=0.1))
    # levels 1 and 2 only: the masker is untouched
    optim = optimizers(model)
    before = snapshot(model)
    logs = model.outer_step(batch(), batch(seed=1), None, optim,
                            update_masker=False)
    assert 'loss_val' not in logs and 'hypergrad_norm' not in logs
    assert changed(before, model, 'mae') and changed(before, model, 'head')
    assert not changed(before, model, 'masker')
    assert all(p.grad is None for p in model.masker.parameters())
    # level 3 only (levels 1 and 2 with lr 0, ξ set explicitly): only the
    # masker moves, encoder, decoder and head stay bit-exact
    optim = optimizers(model, kind='sgd', lr=(0.0, 0.0, 1e-2))
    before = snapshot(model)
    model.outer_step(batch(), batch(seed=1), batch(seed=2), optim,
                     update_masker=True)
    assert changed(before, model, 'masker')
    assert not changed(before, model, 'mae')
    assert not changed(before, model, 'head')
    assert all(p.grad is None for p in model.parameters())


def test_part_params_are_the_parameters_the_config_optimizes():
    """The hypergradient's parts (part_params) and the optimizers that
    PartsOptimWrapperConstructor builds from optim_parts hold the same
    parameters, together every trainable one, each in one part."""
    from mlmask_mm.engine.parts import PartsOptimWrapperConstructor
    model = build()
    cfg = Config.fromfile(SCHEDULE).optim_wrapper
    wrappers = PartsOptimWrapperConstructor(
        {part: cfg[part] for part in ('mae', 'head', 'masker')})(model)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for part, wrapper in wrappers.items():
        optimized = {names[id(p)] for g in wrapper.optimizer.param_groups
                     for p in g['params']}
        assert optimized == set(model.part_params(part)), part
        seen += optimized
    assert sorted(seen) == sorted(
        n for n, p in model.named_parameters() if p.requires_grad)
    assert set(model.part_params('head')) == {
        f'downstream_head.{n}'
        for n, _ in model.downstream_head.named_parameters()}
    with pytest.raises(KeyError, match="no part 'decoder'"):
        model.part_params('decoder')


class ToDouble(nn.Module):
    """Stand-in data preprocessor for the float64 test (normalises like
    the real one, keeps float64)."""

    def forward(self, data, training=False):
        x = data['inputs'].double() / 255.0 - 0.5
        return dict(inputs=x, data_samples=data['data_samples'])


def unrolled_reference(model, state, batches, train, val, xi1, xi2,
                       detach_input=True, unroll='exact'):
    """∇φ L3(θ1^K(φ), θ2'(φ)) by autograd through K explicit SGD steps
    (hard masks from the masker at each θ1^k; the masker reads the patch
    embeddings detached, or not: then p depends on θ1 as well and the
    level-1 step differentiates through it).  ``unroll='last'``: θ1^{K−1}
    is a constant, only the last step (on the last batch) depends on φ."""
    phi = hg.leaves(state['masker'])
    t1 = hg.leaves(state['mae'])
    for k, b in enumerate(batches):
        if unroll == 'last' and k == len(batches) - 1:
            t1 = hg.leaves(t1)  # cut φ's path through the earlier steps
        x = model.data_preprocessor(b)['inputs']

        def step_loss(x):
            tokens = model.backbone.embed(x)
            probs = model.masker.probabilities(
                tokens.detach() if detach_input else tokens)
            with torch.no_grad():  # the hard top-k of these p
                res = model.masker(tokens)
            return model.weighted_reconstruction_loss(x, res, probs, tokens)
        g = hg.grads(model.call({**t1, **phi}, step_loss, x), t1,
                     create_graph=True)
        t1 = {n: t1[n] - xi1 * g[n] for n in t1}
    tr, va = (model.data_preprocessor(d) for d in (train, val))
    t2 = hg.leaves(state['head'])
    g2 = hg.grads(model.call({**t1, **t2}, model.head_loss, tr['inputs'],
                             tr['data_samples']), t2, create_graph=True)
    t2 = {n: t2[n] - xi2 * g2[n] for n in t2}
    loss = model.call({**t1, **t2}, model.head_loss, va['inputs'],
                      va['data_samples'])
    return hg.grads(loss, phi)


def outer_step_error(mode, unroll_steps, fd_radius=1e-2, detach_input=True,
                     unroll='exact'):
    """With SGD at levels 1 and 2 (lr = ξ, ``xi1=xi2='lr'``) the steps
    outer_step takes are the unrolled steps of the formulas: its
    hypergradient is compared with autograd through them (float64, dropout
    off)."""
    xi1, xi2 = 0.05, 0.5
    model = build(masker='MLOMLPMasker',
                  hypergrad=dict(mode=mode, unroll_steps=unroll_steps,
                                 unroll=unroll, fd_radius=fd_radius,
                                 xi1='lr', xi2='lr')).double()
    model.masker.detach_input = detach_input
    model.data_preprocessor = ToDouble()
    state = snapshot(model)
    batches = [batch(seed=s) for s in range(unroll_steps)]
    train, val = batch(seed=100), batch(seed=200)
    ref_model = copy.deepcopy(model)
    model.outer_step(batches, train, val,
                     optimizers(model, 'sgd', (xi1, xi2, 1e-3)),
                     update_masker=True)
    got = model.last_hypergradient
    with hg.math_attention():  # the only SDPA kernel with double backward
        ref = unrolled_reference(ref_model, state, batches, train, val, xi1,
                                 xi2, detach_input, unroll)
    assert hg.norm(ref) > 1e-3
    if mode == 'exact':
        for n in ref:
            torch.testing.assert_close(got[n], ref[n], rtol=1e-9,
                                       atol=1e-15)
    return (hg.norm({n: got[n] - ref[n] for n in ref}) /
            hg.norm(ref)).item()


@pytest.mark.parametrize('unroll_steps', [1, 2])
def test_outer_step_exact_hypergradient_equals_unrolled_autograd(
        unroll_steps):
    assert outer_step_error('exact', unroll_steps) < 1e-12


@pytest.mark.parametrize('unroll_steps', [1, 2])
def test_undetached_masker_input_equals_autograd_through_the_steps_taken(
        unroll_steps):
    """detach_input=False: p depends on θ1 through the patch embeddings;
    the level-1 step learns through p (as the official code) and the
    hypergradient differentiates exactly that step."""
    assert outer_step_error('exact', unroll_steps,
                            detach_input=False) < 1e-12


@pytest.mark.parametrize('detach_input', [True, False])
def test_outer_step_last_step_unroll_equals_autograd_through_the_last_step(
        detach_input):
    """unroll='last' with K = 2 (the CIFAR reproduction config): outer_step
    differentiates the *last* MAE step (θ1^1 → θ1^2 on the second batch),
    taken as autograd through that step alone; the first step's or the
    full recursion's derivative is a different vector."""
    assert outer_step_error('exact', 2, detach_input=detach_input,
                            unroll='last') < 1e-12


def test_last_step_unroll_differs_from_the_first_step_and_the_recursion():
    """The reference above is not blind: through the first step only, or
    through both, the hypergradient differs by > 1 % (so a loop that
    records the wrong step fails the test above)."""
    model = build(masker='MLOMLPMasker').double()
    model.data_preprocessor = ToDouble()
    state = snapshot(model)
    batches = [batch(seed=s) for s in range(2)]
    train, val = batch(seed=100), batch(seed=200)
    with hg.math_attention():
        last = unrolled_reference(model, state, batches, train, val, 0.05,
                                  0.5, unroll='last')
        full = unrolled_reference(model, state, batches, train, val, 0.05,
                                  0.5)
        first = unrolled_reference(model, state, batches[:1], train, val,
                                   0.05, 0.5)
    for other in (full, first):
        diff = hg.norm({n: last[n] - other[n] for n in last})
        assert diff > 0.01 * hg.norm(last)


def test_undetached_masker_input_level1_step_learns_through_p():
    """The patch embedding's level-1 gradient includes the path through p:
    it differs from the detached run's by the term ∂L1/∂p · ∂p/∂θ1."""
    grads = {}
    for detach in (True, False):
        model = build(masker='MLOTokenMasker')
        model.masker.detach_input = detach
        data = model.data_preprocessor(batch(), True)
        model(**data, mode='loss')['loss'].backward()
        grads[detach] = model.backbone.patch_embed.projection.weight.grad
        assert all(p.grad is None for p in model.masker.parameters())
    assert not torch.allclose(grads[True], grads[False])


def test_outer_step_fd_hypergradient_equals_unrolled_autograd():
    """Central differences: 1.1e-3 relative error at r = 1e-2 on this
    2-block ViT (GELU, softmax, LayerNorm curvature; masker at PyTorch's
    default init), falling as r² (1.1e-5 at r = 1e-3)."""
    coarse = outer_step_error('finite_difference', 2, 1e-2)
    assert coarse < 2e-3
    assert outer_step_error('finite_difference', 2, 1e-3) < coarse / 30


SCHEDULE = osp.join(REPO, 'configs', '_base_', 'schedules',
                    'mlo-mae_adamw.py')


def config_optimizers(model, lr=(1.5e-4, 1e-3, 1e-3)):
    """AdamW of each part as the MLO-MAE schedule base configures it (betas,
    weight decay, eps), at the given learning rates."""
    cfg = Config.fromfile(SCHEDULE).optim_wrapper
    wrappers = {}
    for part, part_lr in zip(('mae', 'head', 'masker'), lr):
        kw = {k: v for k, v in cfg[part].optimizer.items() if k != 'type'}
        kw['lr'] = part_lr
        wrappers[part] = OptimWrapper(torch.optim.AdamW(
            list(model.part_params(part).values()), **kw))
    return OptimWrapperDict(**wrappers)


@pytest.mark.parametrize('masker', ['MLOTokenMasker', 'MLOMLPMasker'])
def test_official_weighting_both_paths_carry_weight(masker):
    """Default ξ1 = ξ2 = 1 (betty's darts, the official code): the head
    path ξ2 ∇²θ1θ2 L2 g2 is of the order of the direct path g1 (measured
    11-14x at initialisation here, where the head's small weights make g1
    small), the masking network's gradient is far above its AdamW ε, and
    AdamW's first step moves every parameter with a gradient by ~lr.  With
    ξ = the learning rate (the unrolled-SGD reading) the head path is 1e-2
    of the direct path and half the gradient elements fall below 1e-8."""
    model = build(masker=masker)
    assert model.hypergrad['xi1'] == model.hypergrad['xi2'] == 1.0
    optim = config_optimizers(model)
    group = optim['masker'].optimizer.param_groups[0]
    eps, lr, wd = group['eps'], group['lr'], group['weight_decay']
    before = {n: p.detach().clone()
              for n, p in model.part_params('masker').items()}
    logs = model.outer_step(batch(), batch(seed=1), batch(seed=2), optim,
                            update_masker=True)
    assert 0.1 < logs['hypergrad_head_share'] < 30
    assert logs['hypergrad_rms'] > 1e4 * eps
    grad = model.last_hypergradient
    torch.testing.assert_close(logs['hypergrad_rms'],
                               hg.norm(grad) / sum(
                                   g.numel() for g in grad.values())**0.5)
    # AdamW: φ ← φ (1 − lr·wd) − lr·m̂/(√v̂ + ε), and m̂/√v̂ = sign(g) at
    # the first step when |g| ≫ ε
    moved = torch.cat([
        (before[n] * (1 - lr * wd) - p.detach()).abs().flatten() / lr
        for n, p in model.part_params('masker').items()])
    live = torch.cat([(g != 0).flatten() for g in grad.values()])
    # (ReLU units dead on this batch: 0; 75 % live at PyTorch's default init)
    assert live.float().mean() > 0.6
    near_lr = ((moved > 0.99) & (moved < 1.01))[live]
    assert near_lr.float().mean() > 0.99

    # the unrolled-SGD reading, for contrast
    model = build(masker=masker, hypergrad=dict(xi1='lr', xi2='lr'))
    logs = model.outer_step(batch(), batch(seed=1), batch(seed=2),
                            config_optimizers(model), update_masker=True)
    assert logs['hypergrad_head_share'] < 0.03


def test_head_share_at_init_is_inverse_to_the_head_weights():
    """Why the head path dominates at initialisation.  With a linear head
    z = W f(θ1), the direct path g1 = ∇θ1 L3 = (∂f/∂θ1)ᵀ Wᵀ (softmax − y)
    is proportional to W, while the head path's mixed derivative
    ∇²θ1θ2 L2 · g2 contains (∂f/∂θ1)ᵀ (softmax − y) ⊗ g2, which does not
    vanish with W.  So for small W the share ‖head path‖ / ‖g1‖ is ∝ 1/‖W‖:
    scaling W by 1/10 multiplies it by ~10 (LinearClsHead's init is
    N(0, 0.01²), hence the 9-17x measured at init in docs/mlo_mae.md)."""
    shares = {}
    for scale in (0.01, 0.1, 10.0):
        model = build()
        with torch.no_grad():
            model.downstream_head.fc.weight.mul_(scale)
        optim = optimizers(model, kind='sgd', lr=(0.0, 0.0, 0.0))
        shares[scale] = model.outer_step(
            batch(), batch(seed=1), batch(seed=2), optim,
            update_masker=True)['hypergrad_head_share']
    assert shares[0.01] / shares[0.1] == pytest.approx(10, rel=0.05)
    # with large weights the direct path is no longer small
    assert shares[10.0] < shares[0.1] / 20


def test_loss_path_and_probability_weighting():
    model = build()
    data = model.data_preprocessor(batch(), True)
    loss = model(**data, mode='loss')['loss']
    assert torch.isfinite(loss)
    loss.backward()
    # the plain train_step path never trains the masker
    assert all(p.grad is None for p in model.masker.parameters())
    assert model.backbone.patch_embed.projection.weight.grad is not None
    # with p ≡ 1 the weighted loss is mmpretrain's MAE pixel loss
    x = data['inputs']
    tokens, res = model.mask(x)
    pred = model.reconstruct(tokens, res)
    ell = per_patch_reconstruction_loss(model.head, pred, x)
    torch.testing.assert_close(
        probability_weighted_loss(ell, res.mask, torch.ones_like(ell)),
        model.head.loss(pred, x, res.mask))
    weighted = probability_weighted_loss(ell, res.mask, res.scores)
    by_hand = (res.mask * res.scores * ell).sum() / res.mask.sum()
    torch.testing.assert_close(weighted, by_hand)


def test_masker_dims_default_to_the_backbone():
    model = build(masker='MLOMLPMasker')
    assert model.masker.num_patches == 16
    assert model.masker.embed_dims == 32
    assert model.backbone.mask_ratio == model.masker.mask_ratio == 0.75


@pytest.mark.parametrize('override,match', [
    (dict(masker=None), 'model.masker'),
    (dict(masker=dict(type='RandomMasker')), 'ProbabilityMasker'),
    (dict(downstream_head=None), 'downstream_head'),
    (dict(feature='avg'), 'feature'),
    (dict(amp='fp16'), 'amp'),
    (dict(hypergrad=dict(mode='fd')), 'mode'),
    (dict(hypergrad=dict(unroll_steps=0)), 'unroll_steps'),
    (dict(hypergrad=dict(steps=2)), 'unknown model.hypergrad'),
    (dict(hypergrad=dict(xi1=-1.0)), 'hypergrad.xi1'),
    (dict(hypergrad=dict(xi2='adam')), 'hypergrad.xi2'),
    # double backward through compiled blocks fails under aot_autograd
    (dict(compile=True), "compile with model.hypergrad.mode='exact'"),
])
def test_bad_settings(override, match):
    cfg = model_cfg()
    cfg.update(override)
    with pytest.raises((ValueError, TypeError), match=match):
        MODELS.build(cfg)


def test_wrong_number_of_mae_batches():
    model = build(hypergrad=dict(unroll_steps=2))
    with pytest.raises(ValueError, match='unroll_steps=2'):
        model.outer_step([batch()] * 3, batch(), batch(), optimizers(model),
                         update_masker=False)


@pytest.mark.parametrize('mode', ['exact', 'finite_difference'])
def test_bf16_autocast(mode):
    """amp='bf16': levels 1-2 and the exact products under autocast, the
    finite differences in strict fp32; parameters stay fp32."""
    model = build(amp='bf16', hypergrad=dict(mode=mode))
    optim = optimizers(model)
    before = snapshot(model)
    logs = model.outer_step(batch(), batch(seed=1), batch(seed=2), optim,
                            update_masker=True)
    assert all(torch.isfinite(v) for v in logs.values())
    for part in ('mae', 'head', 'masker'):
        assert changed(before, model, part), part
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.get_float32_matmul_precision() == 'highest'


@pytest.mark.slow
def test_compile_runs_with_finite_differences():
    """compile=True is refused with the exact hypergradient (test_bad_
    settings); with finite differences nothing is differentiated twice
    through the compiled blocks (aot_autograd, the backend that fails the
    exact mode; 'aot_eager' needs no C++ compiler)."""
    torch.manual_seed(0)
    model = MODELS.build(model_cfg(
        compile=dict(backend='aot_eager'),
        hypergrad=dict(mode='finite_difference')))
    before = snapshot(model)
    logs = model.outer_step(batch(), batch(seed=1), batch(seed=2),
                            optimizers(model), update_masker=True)
    assert all(torch.isfinite(v) for v in logs.values())
    for part in ('mae', 'head', 'masker'):
        assert changed(before, model, part), part


def test_official_head_and_learnable_position_embedding():
    """The official code's options: class token → LayerNorm → Dropout(0.1)
    → Linear, and a trained position embedding (part of θ1, so also of the
    hypergradient's level-1 products)."""
    model = build(feature='cls', learnable_pos_embed=True,
                  downstream_head=dict(type='MLOClsHead',
                                       num_classes=NUM_CLASSES,
                                       in_channels=32, dropout=0.1,
                                       loss=dict(type='CrossEntropyLoss')))
    head = model.downstream_head
    assert head.dropout.p == 0.1
    head.eval()
    f = torch.randn(5, 32)
    expected = head.fc(torch.nn.functional.layer_norm(
        f, (32, ), head.norm.weight, head.norm.bias))
    torch.testing.assert_close(head((f, )), expected)
    head.train()
    assert 'backbone.pos_embed' in model.part_params('mae')
    before = model.backbone.pos_embed.detach().clone()
    logs = model.outer_step(batch(), batch(seed=1), batch(seed=2),
                            optimizers(model), update_masker=True)
    assert torch.isfinite(logs['hypergrad_norm'])
    assert not torch.equal(before, model.backbone.pos_embed)
    # the head in eval mode: no dropout, deterministic predictions
    model.eval()
    data = model.data_preprocessor(batch(), False)
    a, b = (model(**data, mode='predict') for _ in range(2))
    assert all(torch.equal(x.pred_score, y.pred_score) for x, y in zip(a, b))
    # fixed by default (MAE)
    assert 'backbone.pos_embed' not in build().part_params('mae')


def test_mask_statistics_separate_position_pattern_and_per_image_masks():
    from mlmask_mm.models.maskers.base import mask_from_ranking
    model = build()
    row = torch.linspace(0.05, 0.95, 16)
    same = row.expand(4, 16).clone()  # one position pattern for all images
    res = mask_from_ranking(same, 4, same)
    stats = model.mask_statistics(res)
    assert stats['mask_shared'] == 1 and stats['mask_prob_image_std'] == 0
    torch.testing.assert_close(stats['mask_prob_position_std'], row.std())
    # each image the pattern shifted by 4: every patch is visible in one
    # image, so no patch is masked in all, and p averages out over images
    own = torch.stack([row.roll(4 * i) for i in range(4)])
    stats = model.mask_statistics(mask_from_ranking(own, 4, own))
    assert stats['mask_shared'] == 0
    assert stats['mask_prob_image_std'] > 2 * stats['mask_prob_position_std']
    sat = torch.tensor([[0.001, 0.5, 0.999, 0.3]])
    assert model.mask_statistics(mask_from_ranking(sat, 1, sat))[
        'mask_prob_saturated'] == 0.5
