"""CL-MAE details of the published method that earlier tests let through
(issue 25): which patches the MAE step keeps, what the module and the soft
pass read, the configs' curriculum, the optimizer semantics of the
published runs (torch 1.x), the module's LayerNorm.

The reference is the official code, github.com/ristea/cl-mae at 2a72773:
``models_mae.py`` (``forward_encoder`` l. 288-308, ``curriculum_masking``
l. 252-285, ``MaskingNet`` l. 55-103), ``engine_pretrain.py``
(``train_one_epoch``), ``main_pretrain.py`` (l. 186-203).
"""
import copy
import types

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mlmask_mm.models.algorithms.cl_mae import frozen
from mlmask_mm.models.maskers import CurriculumMasker
from mlmask_mm.registry import HOOKS
from test_cl_mae import CL_CIFAR, CL_IN1K, batch, build_model


@pytest.fixture(autouse=True)
def _one_thread(_torch_threads):
    torch.set_num_threads(1)


def official_tokens(model, x):
    """models_mae.py l. 290-293: ``x = self.patch_embed(x)`` (a p x p
    stride-p convolution), ``x = x + self.pos_embed[:, 1:, :]``; written
    with F.conv2d on the backbone's weights."""
    proj = model.backbone.patch_embed.projection
    p = proj.kernel_size[0]
    t = F.conv2d(x, proj.weight, proj.bias, stride=p)
    t = t.flatten(2).transpose(1, 2)
    return t + model.backbone.pos_embed[:, 1:, :]


# ------------------------------------------- the MAE step keeps the top K
def test_mae_step_keeps_the_k_highest_scoring_patches(monkeypatch):
    """models_mae.py l. 272-281: ``argsort(descending=True)``, the first
    len_keep = int(L (1 − r)) kept: the MAE step encodes and is scored on
    the complement of the K highest scores of the module."""
    model, optim = build_model()
    seen = {}

    def record_scores(module, args, result):
        seen.setdefault('scores', result.scores.detach().clone())

    model.masker.register_forward_hook(record_scores)
    encode = model.backbone.encode_visible

    def spy_encode(tokens, ids_keep):
        seen['ids_keep'] = ids_keep.clone()
        return encode(tokens, ids_keep)

    loss = model.head.loss

    def spy_loss(pred, inputs, mask):
        seen['mask'] = mask.clone()
        return loss(pred, inputs, mask)

    monkeypatch.setattr(model.backbone, 'encode_visible', spy_encode)
    monkeypatch.setattr(model.head, 'loss', spy_loss)
    model.train_step(batch(B=6, seed=3), optim)
    s = seen['scores']
    B, L = s.shape
    K = int(L * (1 - 0.75))
    top = s.topk(K, dim=1).indices.sort(1).values
    assert torch.equal(seen['ids_keep'].sort(1).values, top)
    expected = torch.ones(B, L).scatter_(1, top, 0)
    assert torch.equal(seen['mask'].float(), expected)
    # and the kept scores are the highest: min kept > max masked
    kept = s.gather(1, top)
    masked = s.masked_fill(expected == 0, -1)
    assert (kept.min(1).values > masked.max(1).values).all()


# ------------------------------------------------- what the module reads
def test_module_reads_patch_tokens_plus_position_embedding():
    """models_mae.py l. 293-296: the masking net reads the patch tokens
    *with* the position embedding, in the MAE step and in the module step;
    on a flat image (every patch alike) its input then still differs from
    position to position by exactly the position embedding."""
    model, optim = build_model()
    seen = []
    model.masker.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()))
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x[2] = 0.7  # a flat image
    before = official_tokens(model, x).detach()
    model.mae_step(x, None, optim['mae'])
    model.masker_step(x, None, optim['masker'])
    assert len(seen) == 2
    # the MAE step's input, before the update of the patch embedding
    torch.testing.assert_close(seen[0], before, rtol=0, atol=1e-6)
    pos = model.backbone.pos_embed[0, 1:].detach()
    flat = seen[0][2]
    torch.testing.assert_close(flat - flat[:1], pos - pos[:1], rtol=0,
                               atol=1e-5)
    assert (pos - pos[:1]).abs().max() > 0.5
    # the module step reads the tokens of the updated patch embedding
    torch.testing.assert_close(seen[1], official_tokens(model, x).detach(),
                               rtol=0, atol=1e-6)


# ------------------------------------------- the soft pass: scale, then go
@pytest.mark.parametrize('fill', [0.0, 0.5, None])
def test_soft_pass_scales_tokens_with_their_position_embedding(
        monkeypatch, fill):
    """models_mae.py l. 267 (``x = x * mask_embedding.unsqueeze(-1)``) on
    the tokens of l. 293 (position embedding already added): the encoder's
    patch inputs are s_i (patch_i + pos_i), so s = 0 gives all-zero
    inputs, position embedding included."""
    model, _ = build_model()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    s = torch.rand(2, 16, generator=g) if fill is None else torch.full(
        (2, 16), fill)
    seen = []
    walk = model.backbone.walk

    def spy(tokens, *args, **kwargs):
        seen.append(tokens.detach().clone())
        return walk(tokens, *args, **kwargs)

    monkeypatch.setattr(model.backbone, 'walk', spy)
    with torch.no_grad():
        model.soft_reconstruct(model.backbone.embed(x), s)
    (got, ) = seen
    expected = s[..., None] * official_tokens(model, x).detach()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    if fill == 0.0:
        assert got.abs().max() == 0


# --------------------------------------------------- the configs' curriculum
@pytest.mark.parametrize('path', [CL_IN1K, CL_CIFAR])
def test_config_curriculum_is_partner_to_adversary_once_per_epoch(path):
    """main_pretrain.py l. 195-203: c(e) = 1 − 2e/E (e < E/2), else
    1 − 2(e + 1)/E, set once before each epoch: +1 (partner) first, −1
    (adversary) last, the same value in every iteration of an epoch."""
    cfg = Config.fromfile(path)
    (hook_cfg, ) = [h for h in cfg.custom_hooks
                    if h['type'].split('.')[-1] == 'CurriculumHook']
    hook = HOOKS.build(copy.deepcopy(hook_cfg))
    E = cfg.train_cfg.max_epochs
    per_epoch = 5004  # ImageNet at 8 x 256
    for e in (0, 1, E // 2 - 1, E // 2, E - 1):
        published = 1 - 2 * e / E if e < E / 2 else 1 - 2 * (e + 1) / E
        for j in (0, per_epoch // 2, per_epoch - 1):
            runner = types.SimpleNamespace(
                epoch=e, max_epochs=E, iter=e * per_epoch + j,
                max_iters=E * per_epoch)
            assert hook.value_at(runner) == pytest.approx(
                published, abs=1e-12), (e, j)
    first = types.SimpleNamespace(epoch=0, max_epochs=E, iter=0,
                                  max_iters=E * per_epoch)
    assert hook.value_at(first) == 1.0


# ----------------------------------- the published runs' optimizer (torch 1)
def _official_loop(model, groups, batches, set_to_none):
    """engine_pretrain.py, train_one_epoch: ONE AdamW over both parts;
    MAE step (module frozen), ``optimizer.step()``, ``zero_grad()``; module
    step (MAE frozen), ``optimizer.step()``, ``zero_grad()``.  torch 1.x's
    ``zero_grad()`` is ``set_to_none=False``."""
    opt = torch.optim.AdamW(groups)
    for data in batches:
        data = model.data_preprocessor(data, True)
        x = data['inputs']
        with frozen(model.masker.parameters()):
            tokens, result = model.mask(x)
            loss = model.head.loss(model.reconstruct(tokens, result), x,
                                   result.mask)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=set_to_none)
        with frozen(model.mae_parameters()):
            loss = model.masker_loss(x)['loss_masker']
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=set_to_none)
        model.train_iter += 1


@pytest.mark.parametrize('torch1', [True, False])
def test_torch1_zero_grad_equals_the_published_single_optimizer(torch1):
    """``torch1_zero_grad=True`` trains as the official loop under torch
    1.x (the frozen part also takes AdamW momentum and weight-decay steps
    on its zero gradients); the default as the official loop under torch
    ≥ 2.0 (the frozen part untouched).  Three iterations."""
    model, optim = build_model(torch1_zero_grad=torch1)
    model.set_curriculum(0.6)
    reference = copy.deepcopy(model)
    names = {id(p): n for n, p in model.named_parameters()}
    # the two optimizers' groups (lr, betas, decay per group) as one AdamW
    specs = [(dict((k, v) for k, v in group.items() if k != 'params'),
              [names[id(p)] for p in group['params']])
             for key in ('mae', 'masker')
             for group in optim[key].optimizer.param_groups]
    batches = [batch(B=4, seed=i) for i in range(3)]
    for data in batches:
        model.train_step(copy.deepcopy(data), optim)
    results = {}
    for set_to_none in (False, True):
        ref = copy.deepcopy(reference)
        ref_params = dict(ref.named_parameters())
        groups = [dict(hyper, params=[ref_params[n] for n in group_names])
                  for hyper, group_names in specs]
        _official_loop(ref, groups, copy.deepcopy(batches), set_to_none)
        results[set_to_none] = max(
            (p - ref_params[n]).abs().max().item()
            for n, p in model.named_parameters())
    same, other = (False, True) if torch1 else (True, False)
    assert results[same] < 1e-6, results
    assert results[other] > 1e-5, results


def test_torch1_zero_grad_moves_the_frozen_module_in_the_mae_step():
    """From the second iteration on, the MAE step also moves the module
    (zero gradient: momentum and decay) with ``torch1_zero_grad``; not by
    default."""
    for torch1 in (False, True):
        model, optim = build_model(torch1_zero_grad=torch1)
        model.train_step(batch(seed=0), optim)
        before = [p.detach().clone() for p in model.masker.parameters()]
        data = model.data_preprocessor(batch(seed=1), True)
        model.mae_step(data['inputs'], None, optim['mae'],
                       partner=optim['masker'] if torch1 else None)
        moved = any(not torch.equal(a, p) for a, p in
                    zip(before, model.masker.parameters()))
        assert moved == torch1


# --------------------------------------------------------- the module's LN
def test_module_layer_norms_are_torch_default_as_official():
    """models_mae.py l. 57 and 132: ``MaskingNet(num_tokens, embed_dim)``
    with ``norm_layer=nn.LayerNorm`` (eps 1e-5), unlike the MAE's
    ``partial(nn.LayerNorm, eps=1e-6)``."""
    masker = CurriculumMasker(embed_dims=16, num_layers=2, num_heads=2,
                              num_patches=16)
    norms = [m for m in masker.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1
    assert {m.eps for m in norms} == {1e-5}


# ------------------------------------------- mask_specificity: log, picture
def test_mask_specificity_is_logged_and_titles_the_mask_picture():
    """Issue 21: the MAE step logs mask_specificity (0 for a batch of one
    image repeated: one pattern); the mask picture has a title band with
    it, which differs between a batch of identical and of different
    images."""
    from mlmask_mm.models.utils import mask_specificity
    from mlmask_mm.visualization import render_mask_grid
    from mlmask_mm.visualization.mask_grid import TITLE_HEIGHT
    model, optim = build_model()
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    same = x[:1].repeat(4, 1, 1, 1)
    log = model.mae_step(same, None, optim['mae'])
    assert log['mask_specificity'] == 0
    log = model.mae_step(x, None, optim['mae'])
    with torch.no_grad():
        expected = mask_specificity(model.mask(x)[1].mask)
    assert 0 < expected <= 4 / 3
    # the pictures' un-normalisation (the Runner's preprocessor has them)
    model.data_preprocessor.mean = torch.full((3, ), 128.)
    model.data_preprocessor.std = torch.full((3, ), 64.)
    grids = [render_mask_grid(model, images) for images in (same, x)]
    for grid in grids:
        band = grid[:TITLE_HEIGHT]
        assert (band < 100).any() and (band == 255).mean() > 0.8
        assert grid.shape[0] == TITLE_HEIGHT + 4 * (4 * 18 + 2)
    assert not (grids[0][:TITLE_HEIGHT] == grids[1][:TITLE_HEIGHT]).all()
