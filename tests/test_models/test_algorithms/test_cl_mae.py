"""CL-MAE: losses, masking module, the two-step iteration, curriculum hook.

All on CPU with a 2-block ViT on 16 px images (as conftest.tiny_config) and
a 1-block masking module.
"""
import copy
import math
import os
import os.path as osp
import sys
import types

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample
from PIL import Image

from conftest import (REPO, KillAfter, load_tool, make_image_folder,
                      tiny_config)
from mlmask_mm.engine.config_checks import check_config
from mlmask_mm.engine.hooks.curriculum_hook import (CurriculumHook,
                                                    curriculum_value)
from mlmask_mm.models.algorithms.cl_mae import frozen
from mlmask_mm.models.losses import diversity_loss
from mlmask_mm.models.maskers import CurriculumMasker, RandomMasker
from mlmask_mm.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mlmask_mm.visualization.mask_grid import TITLE_HEIGHT

CL_DIR = osp.join(REPO, 'configs', 'cl_mae')
CL_DEMO = osp.join(CL_DIR, 'cl-mae_vit-tiny-p4_demo.py')
CL_CIFAR = osp.join(CL_DIR, 'cl-mae_vit-tiny-p2_cifar10.py')
CL_IN1K = osp.join(CL_DIR, 'cl-mae_vit-base-p16_8xb256-amp-coslr-200e_in1k.py')
CL_STUDY = osp.join(CL_DIR, 'cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py')
CL_STUDY_N2 = osp.join(CL_DIR,
                       'cl-mae_vit-tiny-p4_1xb64-coslr-10k-n2_cifar10.py')


# ----------------------------------------------------------------- helpers
def cl_config(data_root: str, work_dir: str, max_iters: int = 4,
              img_size: int = 16, patch_size: int = 4, batch_size: int = 4,
              **model_overrides) -> Config:
    """The CL-MAE demo config shrunk like conftest.tiny_config, with a
    1-block module, two cosine schedules and the curriculum hook."""
    cfg = tiny_config(data_root, work_dir, max_iters, img_size, patch_size,
                      batch_size, config=CL_DEMO)
    cfg.model.masker = dict(type='CurriculumMasker', head='token',
                            num_patches=(img_size // patch_size)**2,
                            embed_dims=32, num_layers=1, num_heads=2,
                            mask_ratio=0.75)
    cfg.model.update(model_overrides)
    cosine = [dict(type='CosineAnnealingLR', by_epoch=False, begin=0,
                   end=max_iters, eta_min=1e-5)]
    cfg.param_scheduler = dict(mae=cosine, masker=copy.deepcopy(cosine))
    cfg.custom_hooks = [dict(type='CurriculumHook', start=1.0, end=-1.0,
                             shape='linear', skip_zero=True)]
    return cfg


def build_model(seed: int = 0, masker_lr=None, **overrides):
    """(model, optim_wrapper dict) of the shrunk config, without a Runner."""
    init_default_scope('mlmask_mm')
    torch.manual_seed(seed)
    masker = overrides.pop('masker', None)  # a built masker stays an object
    cfg = cl_config('/unused', '/unused', **overrides)
    model_cfg = cfg.model.to_dict()
    if masker is not None:
        model_cfg['masker'] = masker
    model = MODELS.build(model_cfg)
    model.init_weights()
    optim = dict(cfg.optim_wrapper)
    optim.pop('constructor')
    if masker_lr is not None:
        optim['masker'].optimizer.lr = masker_lr
    optim_wrapper = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type='PartsOptimWrapperConstructor',
             optim_wrapper_cfg=optim))(model)
    return model, optim_wrapper


def cl_checkpoint(tmp_path) -> tuple:
    """(config file, checkpoint) of the shrunk config on generated images,
    the module at curriculum factor -0.5: what the analysis tools read."""
    root = make_image_folder(str(tmp_path / 'images'))
    cfg = cl_config(root, str(tmp_path / 'work'))
    cfg_path = str(tmp_path / 'cl.py')
    cfg.dump(cfg_path)
    model, _ = build_model()
    model.set_curriculum(-0.5)
    ckpt = str(tmp_path / 'a.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return cfg_path, ckpt


def batch(B: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        inputs=torch.randint(0, 256, (B, 3, 16, 16), generator=g,
                             dtype=torch.uint8),
        data_samples=[DataSample() for _ in range(B)])


def snapshot(params):
    return [p.detach().clone() for p in params]


def optimizer_state(optim_wrapper):
    """A deep copy of an optimizer's per-parameter state."""
    return copy.deepcopy(optim_wrapper.optimizer.state_dict()['state'])


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for i in a:
        assert a[i].keys() == b[i].keys()
        for k in a[i]:
            assert torch.equal(torch.as_tensor(a[i][k]),
                               torch.as_tensor(b[i][k])), (i, k)


class _RecordC(Hook):
    """c(t) as the model sees it in each iteration (after CurriculumHook)."""
    priority = 'LOW'

    def __init__(self):
        self.values = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.values[runner.iter] = float(runner.model.curriculum_factor)


# ------------------------------------------------------------------ losses
def test_diversity_loss_edge_cases():
    s = torch.rand(1, 5, requires_grad=True)
    assert diversity_loss(s).item() == 0  # no pair
    # identical rows: distance 0, the loss at its maximum 1, and a finite
    # (zero) gradient: no NaN from the norm at 0
    same = torch.rand(1, 5).repeat(3, 1).requires_grad_()
    loss = diversity_loss(same)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(same.grad).all()
    assert torch.count_nonzero(same.grad) == 0


# ----------------------------------------------------------- the masker
@pytest.mark.parametrize('head', ['token', 'patch'])
def test_curriculum_masker_keeps_top_k_scores(head):
    torch.manual_seed(0)
    masker = CurriculumMasker(embed_dims=16, num_layers=2, num_heads=2,
                              in_channels=8, mask_ratio=0.75, head=head,
                              num_patches=16)
    masker.init_weights()
    tokens = torch.randn(3, 16, 8, requires_grad=True)
    res = masker(tokens)
    K = 4
    assert res.ids_keep.shape == (3, K) and res.mask.shape == (3, 16)
    assert torch.all(res.mask.sum(1) == 16 - K)
    s = res.scores
    assert s.shape == (3, 16) and ((s > 0) & (s < 1)).all()
    # the kept patches are the K highest scores
    top = torch.topk(s.detach(), K, dim=1).indices.sort(1).values
    assert torch.equal(res.ids_keep.sort(1).values, top)
    assert torch.equal(res.mask, 1 - torch.zeros(3, 16).scatter_(1, top, 1))
    # deterministic: the same tokens give the same mask
    assert torch.equal(masker(tokens).mask, res.mask)
    # scores are differentiable for the masker, the tokens are detached
    s.sum().backward()
    assert tokens.grad is None
    assert all(p.grad is not None for p in masker.parameters())


# ---------------------------------------------------- the two-step iteration
def test_mae_step_leaves_masking_module_untouched():
    model, optim = build_model()
    model.train_step(batch(seed=1), optim)  # both optimizers have state
    data = model.data_preprocessor(batch(seed=2), True)
    masker_before = snapshot(model.masker.parameters())
    masker_state = optimizer_state(optim['masker'])
    mae_before = snapshot(model.mae_parameters())
    log = model.mae_step(data['inputs'], data['data_samples'], optim['mae'])
    assert 'loss' in log and 'loss_masker' not in log
    for a, p in zip(masker_before, model.masker.parameters()):
        assert torch.equal(a, p) and p.grad is None
    assert_same_state(masker_state, optimizer_state(optim['masker']))
    assert any(not torch.equal(a, p)
               for a, p in zip(mae_before, model.mae_parameters()))
    # the module's forward of the MAE step builds no autograd graph
    tokens, result = model.mask(data['inputs'])
    assert tokens.requires_grad and result.scores.grad_fn is None


def test_masker_step_leaves_mae_untouched():
    model, optim = build_model()
    model.train_step(batch(seed=1), optim)
    data = model.data_preprocessor(batch(seed=2), True)
    trainable = [p.requires_grad for p in model.parameters()]
    mae_before = snapshot(model.mae_parameters())
    mae_state = optimizer_state(optim['mae'])
    masker_before = snapshot(model.masker.parameters())
    log = model.masker_step(data['inputs'], data['data_samples'],
                            optim['masker'])
    assert {'loss_masker', 'loss_rec_soft', 'loss_bin', 'loss_kl',
            'loss_div'} <= set(log)
    for a, p in zip(mae_before, model.mae_parameters()):
        assert torch.equal(a, p) and p.grad is None
    assert_same_state(mae_state, optimizer_state(optim['mae']))
    assert any(not torch.equal(a, p)
               for a, p in zip(masker_before, model.masker.parameters()))
    # the MAE is trainable again (and the fixed decoder pos-embed is not)
    assert [p.requires_grad for p in model.parameters()] == trainable
    assert not model.neck.decoder_pos_embed.requires_grad


def test_frozen_restores_flags_on_error():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(
        torch.ones(1), requires_grad=False)
    with pytest.raises(RuntimeError):
        with frozen([a, b]):
            assert not a.requires_grad
            raise RuntimeError
    assert a.requires_grad and not b.requires_grad


def test_optimizers_hold_disjoint_parameters():
    model, optim = build_model()
    ids = {k: {id(p) for g in optim[k].optimizer.param_groups
               for p in g['params']} for k in ('mae', 'masker')}
    assert ids['masker'] == {id(p) for p in model.masker.parameters()}
    assert ids['mae'] == {id(p) for p in model.mae_parameters()
                          if p.requires_grad}
    # no weight decay on the module's token and norms (paramwise_cfg)
    decay = {id(p): g['weight_decay']
             for g in optim['masker'].optimizer.param_groups
             for p in g['params']}
    # as the official code (timm's add_weight_decay): decay on the
    # module's token and weights, none on its norms and biases
    assert decay[id(model.masker.token)] == 0.05
    assert decay[id(model.masker.ln.weight)] == 0
    assert decay[id(model.masker.score_head.bias)] == 0
    assert decay[id(model.masker.score_head.weight)] == 0.05


def test_masker_update_interval_is_honoured():
    model, optim = build_model(masker_update_interval=3)
    steps = [('loss_masker' in model.train_step(batch(seed=i), optim))
             for i in range(7)]
    assert steps == [True, False, False, True, False, False, True]
    step = lambda k: {int(v['step'])  # noqa: E731
                      for v in optim[k].optimizer.state.values()}
    assert step('mae') == {7} and step('masker') == {3}
    assert int(model.train_iter) == 7


def test_masker_batch_size_uses_first_images(monkeypatch):
    model, optim = build_model(masker_batch_size=2)
    seen = []
    original = model.masker_loss

    def spy(inputs, data_samples=None, scores=None):
        seen.append((len(inputs), len(data_samples)))
        return original(inputs, data_samples, scores)

    monkeypatch.setattr(model, 'masker_loss', spy)
    model.train_step(batch(B=4), optim)
    assert seen == [(2, 2)]


def test_soft_batch_size_soft_pass_on_first_images_other_terms_on_all(
        monkeypatch):
    """The cost option: L_rec^soft from the first k images' soft pass;
    L_bin, L_kl (a sum over the batch) and L_div from all B images."""
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    full, _ = build_model()
    sub, _ = build_model(soft_batch_size=2)
    sub.load_state_dict(full.state_dict())
    seen = []
    original = sub.soft_reconstruct

    def spy(tokens, scores):
        seen.append((len(tokens), len(scores)))
        return original(tokens, scores)

    monkeypatch.setattr(sub, 'soft_reconstruct', spy)
    with torch.no_grad():
        a, b = full.masker_loss(x), sub.masker_loss(x)
        first_two = full.masker_loss(x[:2])
    assert seen == [(2, 2)]
    for key in ('loss_bin', 'loss_kl', 'loss_div'):
        torch.testing.assert_close(a[key], b[key])
    torch.testing.assert_close(b['loss_rec_soft'], first_two['loss_rec_soft'])
    assert not torch.allclose(a['loss_rec_soft'], b['loss_rec_soft'])
    with pytest.raises(ValueError, match='soft_batch_size'):
        build_model(soft_batch_size=0)


def test_reuse_module_forward_runs_the_module_once_per_iteration(
        monkeypatch):
    """The cost option: the module step reuses the MAE step's module
    forward (its graph kept).  With the MAE's lr at 0 the MAE step changes
    nothing, the reused scores are the fresh ones, and the module's update
    is the same as with its own forward."""
    models = {}
    for reuse in (False, True):
        model, optim = build_model(reuse_module_forward=reuse)
        for g in optim['mae'].optimizer.param_groups:
            g['lr'] = 0.0
        calls = []
        original = model.masker.forward

        def count(*args, _calls=calls, _original=original, **kwargs):
            _calls.append(torch.is_grad_enabled())
            return _original(*args, **kwargs)

        monkeypatch.setattr(model.masker, 'forward', count)
        log = model.train_step(batch(seed=3), optim)
        assert 'loss_masker' in log
        # the MAE step's forward (no graph, or kept), the module step's
        assert calls == ([True] if reuse else [False, True])
        assert model._kept_scores is None  # the graph is not kept longer
        models[reuse] = model
    for a, b in zip(models[False].masker.parameters(),
                    models[True].masker.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # without a module step in the iteration nothing is kept
    model, optim = build_model(reuse_module_forward=True,
                               masker_update_interval=2)
    model.train_step(batch(seed=1), optim)
    assert model._kept_scores is None


def test_identical_images_identical_masks_and_l_div_spreads_masks():
    """L_div (supplementary Fig. 2-3): without it the module drifts towards
    one mask for every image, with it the masks of the batch move apart.

    The module is a deterministic function of the image, so *identical*
    images always get identical masks, with or without L_div (L_div's
    gradient is 0 between identical score vectors): checked after the
    steps.  The effect of L_div shows on different images: a few module
    steps from the same start, with λ_div = 0 and with λ_div = 2 (the
    spread is the mean pairwise distance of the score vectors relative to
    the start).
    """
    images = torch.randn(6, 3, 16, 16,
                         generator=torch.Generator().manual_seed(0))
    same = images[:1].repeat(4, 1, 1, 1)
    spread = {}
    for lambda_div in (0.0, 2.0):
        model, optim = build_model(seed=0, lambda_div=lambda_div,
                                   masker_lr=1.5e-3)
        start = torch.pdist(model.mask(images)[1].scores).mean()
        for _ in range(10):
            model.masker_step(images, None, optim['masker'])
        spread[lambda_div] = torch.pdist(
            model.mask(images)[1].scores).mean() / start
        _, res = model.mask(same)
        assert (res.mask == res.mask[:1]).all()
        assert (res.scores == res.scores[:1]).all()
    # without L_div the scores of different images draw together; with it
    # they stay much further apart
    assert spread[0.0] < 0.8 and spread[2.0] > 1.5 * spread[0.0]


# -------------------------------------------------------- curriculum hook
@pytest.mark.parametrize('kwargs, total, expected', [
    # published: linear +1 -> -1, 0 skipped (per epoch, E = 4)
    (dict(), 4, [1.0, 0.5, -0.5, -1.0]),
    (dict(), 5, [1.0, 0.6, 0.2, -0.6, -1.0]),
    (dict(skip_zero=False), 5, [1.0, 0.5, 0.0, -0.5, -1.0]),
    (dict(start=2.0, end=0.5, skip_zero=True), 4, [2.0, 1.5, 1.0, 0.5]),
    (dict(shape='cosine'), 4,
     [1.0, math.cos(math.pi / 4), -math.cos(math.pi / 4), -1.0]),
    (dict(shape='cosine', skip_zero=False), 3, [1.0, 0.0, -1.0]),
    (dict(shape='step', num_steps=3), 6, [1, 1, 1, -1, -1, -1]),
    (dict(shape='step', num_steps=3, skip_zero=False), 6,
     [1, 1, 0, 0, -1, -1]),
    (dict(shape='step', num_steps=2, start=1.0, end=0.0), 4, [1, 1, 1, 1]),
])
def test_curriculum_values(kwargs, total, expected):
    got = [curriculum_value(t, total, **kwargs) for t in range(total)]
    assert got == pytest.approx(expected, abs=1e-12)


def test_curriculum_matches_published_epoch_schedule():
    for E in (200, 7):
        published = [1 - 2 * e / E if e < E / 2 else 1 - 2 * (e + 1) / E
                     for e in range(E)]
        assert [curriculum_value(e, E) for e in range(E)] == pytest.approx(
            published, abs=1e-12)
        assert 0 not in [curriculum_value(e, E) for e in range(E)]


def test_curriculum_hook_by_epoch_and_errors():
    hook = CurriculumHook(by_epoch=True)
    runner = types.SimpleNamespace(epoch=3, max_epochs=8, iter=999,
                                   max_iters=10_000)
    assert hook.value_at(runner) == pytest.approx(1 - 2 * 3 / 8)
    with pytest.raises(ValueError, match='shape'):
        CurriculumHook(shape='exp')
    with pytest.raises(ValueError, match='outside'):
        curriculum_value(5, 5)


# ------------------------------------------------------------ the Runner
@pytest.mark.slow
def test_runner_trains_both_parts_and_logs(tmp_path, build_runner):
    root = make_image_folder(str(tmp_path / 'images'))
    cfg = cl_config(root, str(tmp_path / 'work'), max_iters=4,
                    masker_update_interval=2)
    cfg.custom_hooks.append(
        dict(type='MaskVisualizationHook', num_images=3))
    runner = build_runner(cfg, 'cl_mae_runner')
    record = _RecordC()
    runner.register_hook(record)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.train()
    after = runner.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith('backbone.layers') for k in changed)
    assert any(k.startswith('masker.layers') for k in changed)
    # c(t) set before every iteration, as scheduled (linear, 0 skipped)
    assert record.values == pytest.approx(
        {t: curriculum_value(t, 4) for t in range(4)})
    assert float(after['curriculum_factor']) == pytest.approx(-1.0)
    assert int(after['train_iter']) == 4
    hub = runner.message_hub
    for key in ('loss', 'loss_masker', 'loss_rec_soft', 'loss_bin',
                'loss_kl', 'loss_div', 'mask_score_mean', 'mask_binary',
                'mask_batch_std', 'mask_specificity', 'curriculum_c',
                'mae.lr', 'masker.lr'):
        value = hub.get_scalar(f'train/{key}').current()
        assert math.isfinite(value), key
    # n = 2: the module stepped on iterations 0 and 2 only
    steps = {k: {int(v['step']) for v in
                 runner.optim_wrapper[k].optimizer.state.values()}
             for k in ('mae', 'masker')}
    assert steps == {'mae': {4}, 'masker': {2}}
    ckpt = torch.load(str(tmp_path / 'work' / 'iter_4.pth'),
                      weights_only=True)
    assert set(ckpt['optimizer']) == {'mae', 'masker'}
    assert set(ckpt['param_schedulers']) == {'mae', 'masker'}
    # mask picture with the module's scores as a 5th column
    w, h = Image.open(tmp_path / 'work' / 'masks_final.png').size
    assert w > (h - TITLE_HEIGHT) / 3 * 4.5

    # the shared tool renders the module's masks from the checkpoint
    tool = load_tool('visualize_masks')
    dumped = osp.join(str(tmp_path / 'work'), osp.basename(CL_DEMO))
    out = str(tmp_path / 'masks_iter_4.png')
    argv = ['visualize_masks.py', dumped, str(tmp_path / 'work' /
                                             'iter_4.pth'),
            '--num-images', '2', '--out', out]
    old, sys.argv = sys.argv, argv
    try:
        tool.main()
    finally:
        sys.argv = old
    w, h = Image.open(out).size
    assert w > (h - TITLE_HEIGHT) / 2 * 4.5


@pytest.mark.slow
def test_kill_and_resume_restores_curriculum_and_both_optimizers(
        tmp_path, build_runner):
    root = make_image_folder(str(tmp_path / 'images'), per_class=4)
    N, K = 5, 2

    def cfg(work):
        return cl_config(root, str(tmp_path / work), max_iters=N,
                         masker_update_interval=2)

    full = build_runner(cfg('full'), 'cl_full')
    full_c = _RecordC()
    full.register_hook(full_c)
    full.train()

    killed = build_runner(cfg('killed'), 'cl_killed')
    killed.register_hook(KillAfter(K + 1))
    with pytest.raises(KeyboardInterrupt):
        killed.train()

    c = cfg('resumed')
    c.resume = True
    c.load_from = str(tmp_path / 'killed' / f'iter_{K}.pth')
    resumed = build_runner(c, 'cl_resumed')
    resumed_c = _RecordC()
    resumed.register_hook(resumed_c)
    resumed.train()
    assert sorted(resumed_c.values) == list(range(K, N))
    for t in range(K, N):
        assert resumed_c.values[t] == full_c.values[t]
    expected, got = full.model.state_dict(), resumed.model.state_dict()
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, f'resumed run differs in {different}'
    for key in ('mae', 'masker'):
        assert resumed.optim_wrapper[key].get_lr() == \
            full.optim_wrapper[key].get_lr()
        assert_same_state(optimizer_state(full.optim_wrapper[key]),
                          optimizer_state(resumed.optim_wrapper[key]))


# ------------------------------------------------------------ distributed
def _dist_worker(rank: int, world_size: int, init_file: str, out: str):
    import torch.distributed as dist
    from mlmask_mm.engine.parts import PartsDataParallel
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world_size)
    try:
        model, optim = build_model(seed=rank)  # different weights per rank
        wrapped = PartsDataParallel(model, device_ids=None,
                                    broadcast_buffers=False)
        flat = lambda: torch.cat([  # noqa: E731
            p.detach().flatten() for p in model.parameters()])
        start = flat()
        for i in range(2):  # different data per rank
            wrapped.train_step(batch(seed=10 * rank + i), optim)
        gathered = [torch.empty_like(start) for _ in range(world_size)]
        dist.all_gather(gathered, start)
        same_start = all(torch.equal(g, gathered[0]) for g in gathered)
        end = flat()
        dist.all_gather(gathered, end)
        same_end = all(torch.equal(g, gathered[0]) for g in gathered)
        if rank == 0:
            torch.save(dict(same_start=same_start, same_end=same_end,
                            moved=not torch.equal(start, end)), out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_wrapper_keeps_ranks_in_sync(tmp_path):
    """Two gloo processes: rank 0's weights everywhere at the start, the
    gradients averaged at every step, so the weights stay identical."""
    import torch.multiprocessing as mp
    out = str(tmp_path / 'result.pth')
    mp.spawn(_dist_worker, args=(2, str(tmp_path / 'init'), out),
             nprocs=2, join=True)
    result = torch.load(out)
    assert result == dict(same_start=True, same_end=True, moved=True)


@pytest.mark.slow
def test_dist_train_script_uses_the_cl_mae_wrapper(tmp_path):
    """tools/dist_train.sh, two CPU processes, the shrunk demo config."""
    import socket
    import subprocess
    root = make_image_folder(str(tmp_path / 'images'))
    work = str(tmp_path / 'work')
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(port),
               OMP_NUM_THREADS='1')
    env.pop('NNODES', None)
    env.pop('NODE_RANK', None)
    tiny = [
        f'train_dataloader.dataset.data_root={root}',
        'model.backbone.arch.embed_dims=32',
        'model.backbone.arch.num_layers=2',
        'model.backbone.arch.num_heads=2',
        'model.backbone.arch.feedforward_channels=64',
        'model.backbone.img_size=16', 'model.neck.num_patches=16',
        'model.neck.embed_dim=32', 'model.neck.decoder_embed_dim=32',
        'model.neck.decoder_depth=1', 'model.neck.decoder_num_heads=2',
        'model.masker.embed_dims=32', 'model.masker.num_heads=2',
        'model.masker.num_layers=1', 'model.masker.num_patches=16',
        'train_dataloader.dataset.pipeline.1.scale=16',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1', 'custom_hooks.1.num_images=2'
    ]
    proc = subprocess.run(
        ['bash', osp.join('tools', 'dist_train.sh'), CL_DEMO, '2',
         '--work-dir', work, '--cfg-options'] + tiny,
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    ckpt = torch.load(osp.join(work, 'iter_2.pth'), weights_only=True)
    assert set(ckpt['optimizer']) == {'mae', 'masker'}
    assert 'loss_masker' in output and 'curriculum_c' in output


@pytest.mark.slow
def test_cifar10_config_trains_by_epoch_on_the_train_split(
        tmp_path, build_runner):
    """The CIFAR-10 config (epoch loop, per-epoch c, ann_file split),
    shrunk, with plain (not AMP) optimizers on CPU."""
    tool = _split_tool()
    root = str(tmp_path / 'cifar10')
    _fake_cifar10(root, tool)
    tool.main([root, '--per-class', '0'])
    cfg = Config.fromfile(CL_CIFAR)
    small = cl_config(root, str(tmp_path / 'work'))
    cfg.model = small.model
    cfg.work_dir = small.work_dir
    cfg.train_dataloader.update(batch_size=10, num_workers=0,
                                persistent_workers=False)
    ds = cfg.train_dataloader.dataset
    ds.data_root = root
    for t in ds.pipeline:
        if t['type'] == 'RandomResizedCrop':
            t['scale'] = 16
    for key in ('mae', 'masker'):
        cfg.optim_wrapper[key].type = 'OptimWrapper'
        cfg.optim_wrapper[key].pop('loss_scale')
    cfg.train_cfg.max_epochs = 2
    cfg.param_scheduler = dict(mae=[], masker=[])
    cfg.custom_hooks = cfg.custom_hooks[:1]  # CurriculumHook, by epoch
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    runner = build_runner(cfg, 'cl_cifar10')
    record = _RecordC()
    runner.register_hook(record)
    runner.train()
    # only the `train` files (0000-4499): 10 classes x 2 images
    dataset = runner.train_dataloader.dataset
    paths = [dataset.get_data_info(i)['img_path']
             for i in range(len(dataset))]
    assert len(paths) == 20
    assert all(int(osp.basename(p)[:4]) <= 4499 for p in paths)
    # 2 iterations per epoch, c(e) = +1, then -1 (E = 2, 0 skipped)
    assert record.values == {0: 1.0, 1: 1.0, 2: -1.0, 3: -1.0}


# ------------------------------------------------------- configs and errors
@pytest.mark.parametrize('path', [CL_DEMO, CL_CIFAR, CL_IN1K, CL_STUDY])
def test_configs_set_the_published_objective(path):
    """docs/cl_mae.md: the official objective and scoring head, one lr."""
    cfg = Config.fromfile(path)
    model = cfg.model
    assert (model.lambda_bin, model.lambda_kl, model.lambda_div,
            model.get('bin_sigma', 0.12), model.get('div_kappa', 0.1),
            model.kl_reduction) == (1.0, 0.1, 2.0, 0.12, 0.1, 'sum')
    assert model.head.norm_pix is False
    masker = model.masker
    assert (masker.type, masker.head, masker.num_heads) == (
        'CurriculumMasker', 'token', 4)
    grid = model.backbone.get('img_size', 224) // model.backbone.get(
        'patch_size', 16)
    assert masker.num_patches == grid**2
    assert masker.num_layers == (2 if path == CL_DEMO else 5)
    arch = model.backbone.get('arch', 'b')
    width = arch['embed_dims'] if isinstance(arch, dict) else 768
    assert masker.embed_dims == width  # the encoder's width
    optim = cfg.optim_wrapper
    assert optim.mae.optimizer == optim.masker.optimizer
    assert optim.mae.get('type') == optim.masker.get('type')
    assert cfg.param_scheduler['mae'] == cfg.param_scheduler['masker']


@pytest.mark.parametrize('path', [CL_DEMO, CL_CIFAR, CL_IN1K, CL_STUDY])
def test_amp_switches_reach_both_parts(path):
    """tools/train.py --amp (optim_wrapper.type) and the bf16 switch
    (optim_wrapper.dtype) set at the top level apply to the MAE's and the
    module's optimizer alike; one lr stays one lr."""
    from mlmask_mm.engine.parts import PartsOptimWrapperConstructor
    cfg = Config.fromfile(path)
    cfg.optim_wrapper.type = 'AmpOptimWrapper'  # what --amp does
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    cfg.optim_wrapper.dtype = 'bfloat16'
    wrapper = cfg.optim_wrapper.to_dict()
    assert wrapper.pop('constructor') == 'PartsOptimWrapperConstructor'
    parts = PartsOptimWrapperConstructor(wrapper).cfgs
    assert set(parts) == {'mae', 'masker'}
    for part in parts.values():
        assert (part['type'], part['dtype']) == ('AmpOptimWrapper',
                                                 'bfloat16')
    assert parts['mae']['optimizer'] == parts['masker']['optimizer']


def test_n2_config_differs_from_the_study_config_only_in_the_interval():
    """docs/study.md's not-published CL-MAE row: the published study
    config with the module step on every 2nd iteration, nothing else."""
    published = Config.fromfile(CL_STUDY).to_dict()
    n2 = Config.fromfile(CL_STUDY_N2).to_dict()
    assert published['model'].get('masker_update_interval', 1) == 1
    assert n2['model'].pop('masker_update_interval') == 2
    published['model'].pop('masker_update_interval', None)
    assert n2 == published


def test_configs_load_and_build():
    demo = Config.fromfile(CL_DEMO)
    check_config(demo)
    assert demo.model.type == 'CLMAE'
    assert demo.train_dataloader.dataset.data_root == 'data/cifar10_demo'
    assert any(h['type'] == 'MaskVisualizationHook'
               for h in demo.custom_hooks)

    in1k = Config.fromfile(CL_IN1K)
    check_config(in1k)
    assert in1k.train_cfg.max_epochs == 200
    assert in1k.model.masker.num_layers == 5
    assert (in1k.model.lambda_bin, in1k.model.lambda_kl,
            in1k.model.lambda_div) == (1.0, 0.1, 2.0)
    warmup = in1k.param_scheduler['mae'][0]
    assert warmup['type'] == 'LinearLR' and warmup['end'] == 40
    assert in1k.train_dataloader.batch_size == 256
    init_default_scope('mlmask_mm')
    with torch.device('meta'):
        model = MODELS.build(in1k.model)
    assert 85e6 < sum(p.numel() for p in model.backbone.parameters()) < 87e6

    cifar = Config.fromfile(CL_CIFAR)
    check_config(cifar)
    ds = cifar.train_dataloader.dataset
    assert (ds.data_root, ds.data_prefix, ds.ann_file) == (
        'data/cifar10', 'train', 'meta/train.txt')
    assert cifar.model.backbone.patch_size == 2
    assert cifar.model.neck.num_patches == 256

    demo.model.masker_batch_size = demo.train_dataloader.batch_size
    check_config(demo)
    demo.model.masker_batch_size = demo.train_dataloader.batch_size + 1
    with pytest.raises(ValueError, match='masker_batch_size=.* is larger'):
        check_config(demo)
    demo.model.masker_batch_size = None
    demo.model.soft_batch_size = demo.train_dataloader.batch_size + 1
    with pytest.raises(ValueError, match='soft_batch_size=.* is larger'):
        check_config(demo)


def _split_tool():
    return load_tool('dataset_converters/cifar10_split')


def _fake_cifar10(root, tool, indices=(0, 4499, 4500, 4999)):
    """CIFAR-10-like class folders with a few of the 0000-4999 names."""
    g = torch.Generator().manual_seed(0)
    for c in tool.CLASSES:
        os.makedirs(osp.join(root, 'train', c))
        for i in indices:
            arr = torch.randint(0, 256, (16, 16, 3), generator=g,
                                dtype=torch.uint8).numpy()
            Image.fromarray(arr).save(osp.join(root, 'train', c,
                                               f'{i:04d}.jpg'))


def test_cifar10_split_tool(tmp_path):
    tool = _split_tool()
    _fake_cifar10(str(tmp_path), tool)
    assert tool.main([str(tmp_path), '--per-class', '0']) == 0
    train = (tmp_path / 'meta' / 'train.txt').read_text().split('\n')[:-1]
    val = (tmp_path / 'meta' / 'val.txt').read_text().split('\n')[:-1]
    assert len(train) == len(val) == 20
    assert 'airplane/0000.jpg 0' in train and 'truck/4499.jpg 9' in train
    assert 'airplane/4500.jpg 0' in val and 'truck/4999.jpg 9' in val
    with pytest.raises(ValueError, match='expected 5000'):
        tool.main([str(tmp_path)])


def test_errors_name_the_fix():
    model, optim = build_model()
    with pytest.raises(TypeError, match='PartsOptimWrapperConstructor'):
        model.train_step(batch(), optim['mae'])
    model.train()
    with pytest.raises(RuntimeError, match='PartsDataParallel'):
        model(torch.zeros(1, 3, 16, 16), None, mode='loss')
    with pytest.raises(ValueError, match='exactly the keys'):
        OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
            type='PartsOptimWrapperConstructor',
            optim_wrapper_cfg=dict(mae=dict(optimizer=dict(type='SGD')))))(
                model)
    with pytest.raises(ValueError, match='masker_update_interval'):
        build_model(masker_update_interval=0)
    with pytest.raises(TypeError, match='learnable masker'):
        build_model(masker=RandomMasker(0.75))
