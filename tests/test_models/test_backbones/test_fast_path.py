"""The fast path (FastMAEViT + FastMAEPretrainDecoder) against mmpretrain's
own modules: outputs and gradients in float64 on the same weights, masks and
noise; state-dict keys; init; the compile wrapper; the whole MAE loss."""
import copy

import pytest
import torch
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.models.selfsup.mae import MAE, MAEViT

from mlmask_mm.models.utils.fast_blocks import CompiledForward
from mlmask_mm.registry import MODELS

ARCH = dict(embed_dims=32, num_layers=2, num_heads=4, feedforward_channels=64)
VIT = dict(arch=ARCH, img_size=32, patch_size=8, mask_ratio=0.75)
NECK = dict(num_patches=16, patch_size=8, embed_dim=32, decoder_embed_dim=24,
            decoder_depth=2, decoder_num_heads=3, mlp_ratio=2.)
HEAD = dict(type='MAEPretrainHead', norm_pix=True, patch_size=8,
            loss=dict(type='PixelReconstructionLoss', criterion='L2'))
INIT = [dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)]


def build(cls_or_type, seed=0, **kwargs):
    torch.manual_seed(seed)
    if isinstance(cls_or_type, str):
        m = MODELS.build(dict(type=cls_or_type, **kwargs))
    else:
        m = cls_or_type(**kwargs)
    m.init_weights()
    return m


def perturbed(module, seed=1):
    """Weights away from init (LayerNorm 1/0, zero biases would hide a
    swapped weight/bias or ln1/ln2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters()
            if p.grad is not None}


def assert_same_grads(a, b):
    ga, gb = grads(a), grads(b)
    assert set(ga) == set(gb) and ga
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-10, atol=1e-12,
                                   msg=n)


# ----------------------------------------------------------- keys, init
def test_state_dict_keys_and_shapes_are_mmpretrains():
    ref, fast = MAEViT(**VIT), MODELS.build(dict(type='FastMAEViT', **VIT))
    assert [(k, v.shape) for k, v in ref.state_dict().items()] == \
        [(k, v.shape) for k, v in fast.state_dict().items()]
    ref = MAEPretrainDecoder(**NECK)
    fast = MODELS.build(dict(type='FastMAEPretrainDecoder', **NECK))
    assert [(k, v.shape) for k, v in ref.state_dict().items()] == \
        [(k, v.shape) for k, v in fast.state_dict().items()]


@pytest.mark.parametrize('compile', [False, True, 'cuda'])
def test_same_seed_same_initial_weights(compile):
    """Construction and init_weights consume the RNG as mmpretrain's do;
    the compile switch adds no module and no key."""
    for ref_cls, fast, cfg in ((MAEViT, 'FastMAEViT', VIT),
                               (MAEPretrainDecoder, 'FastMAEPretrainDecoder',
                                NECK)):
        a = build(ref_cls, **cfg).state_dict()
        b = build(fast, compile=compile, **cfg).state_dict()
        assert list(a) == list(b)
        for k in a:
            assert torch.equal(a[k], b[k]), k


# ------------------------------------------------ forward and backward
def test_encoder_outputs_and_gradients_equal_mmpretrain_float64():
    ref = perturbed(build(MAEViT, **VIT)).double()
    fast = build('FastMAEViT', **VIT).double()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    outs = []
    for m in (ref, fast):
        torch.manual_seed(7)  # the same noise -> the same mask
        latent, mask, ids_restore = m(x)
        w = torch.linspace(-1, 1, latent.numel(), dtype=torch.float64)
        (latent * w.view_as(latent)).sum().backward()
        outs.append((latent, mask, ids_restore))
    (l1, m1, r1), (l2, m2, r2) = outs
    assert l1.shape == (3, 5, 32)
    assert torch.equal(m1, m2) and torch.equal(r1, r2)
    torch.testing.assert_close(l1, l2, rtol=1e-12, atol=1e-12)
    assert_same_grads(ref, fast)


def test_decoder_outputs_and_gradients_equal_mmpretrain_float64():
    ref = perturbed(build(MAEPretrainDecoder, **NECK)).double()
    fast = build('FastMAEPretrainDecoder', **NECK).double()
    fast.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(3)
    latent = torch.randn(3, 5, 32, dtype=torch.float64, generator=g)
    ids_restore = torch.stack([torch.randperm(16, generator=g)
                               for _ in range(3)])
    inputs, outs = [], []
    for m in (ref, fast):
        x = latent.clone().requires_grad_()
        out = m(x, ids_restore)
        w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64)
        (out * w.view_as(out)).sum().backward()
        inputs.append(x.grad)
        outs.append(out)
    assert outs[0].shape == (3, 16, 8 * 8 * 3)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(inputs[0], inputs[1], rtol=1e-12, atol=1e-12)
    assert_same_grads(ref, fast)


def mae_model(fast: bool):
    backbone = dict(type='FastMAEViT' if fast else 'MaskableViT', **VIT)
    neck = dict(type='FastMAEPretrainDecoder' if fast else
                'MAEPretrainDecoder', in_chans=3, **NECK)
    return MODELS.build(dict(type='MaskedMAE', backbone=backbone, neck=neck,
                             head=HEAD, init_cfg=INIT))


def test_whole_mae_loss_and_gradients_equal_mmpretrains_mae_float64():
    """mmpretrain's MAE (MAEViT + MAEPretrainDecoder) and MaskedMAE on the
    fast modules: the same loss and gradients for the same weights and
    noise (the masker draws mmpretrain's masks)."""
    torch.manual_seed(0)
    ref = MAE(backbone=dict(type='MAEViT', **VIT),
              neck=dict(type='MAEPretrainDecoder', in_chans=3, **NECK),
              head=HEAD, init_cfg=INIT)
    ref.init_weights()
    perturbed(ref).double()
    fast = mae_model(True).double()
    fast.load_state_dict(ref.state_dict())
    images = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    losses = []
    for m in (ref, fast):
        torch.manual_seed(11)
        loss = m.loss(images, [])['loss']
        loss.backward()
        losses.append(loss)
    assert losses[0].dtype == torch.float64
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=0)
    assert_same_grads(ref, fast)


def test_checkpoint_loads_into_mmpretrain_and_back():
    fast = perturbed(build('FastMAEViT', **VIT))
    ref = MAEViT(**VIT)
    ref.load_state_dict(fast.state_dict())  # strict
    back = MODELS.build(dict(type='FastMAEViT', **VIT))
    back.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    a = ref(x)[0]
    torch.manual_seed(0)
    torch.testing.assert_close(back(x)[0], a)


def test_walk_and_unmasked_forward_are_the_eager_modules():
    """Self-Guided MAE and the analysis tools walk the blocks: unchanged."""
    fast = perturbed(build('FastMAEViT', **VIT)).double()
    tokens = fast.embed(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    walked = fast.walk(tokens).output
    torch.testing.assert_close(fast.encode_visible(tokens, None), walked,
                               rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------ settings
@pytest.mark.parametrize('setting,match', [
    (dict(drop_path_rate=0.1), 'drop_path_rate'),
    (dict(layer_cfgs=dict(layer_scale_init_value=0.1)),
     'layer_scale_init_value'),
    (dict(layer_cfgs=dict(attn_drop_rate=0.1)), 'attn_drop_rate'),
    (dict(layer_cfgs=dict(act_cfg=dict(type='ReLU'))), 'GELU'),
])
def test_unsupported_blocks_are_refused(setting, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='FastMAEViT', **VIT, **setting))


def test_bad_compile_value_is_refused():
    with pytest.raises(ValueError, match=r"model.backbone.compile='gpu'"):
        MODELS.build(dict(type='FastMAEViT', compile='gpu', **VIT))
    with pytest.raises(ValueError, match='model.neck.compile=1'):
        MODELS.build(dict(type='FastMAEPretrainDecoder', compile=1, **NECK))


def test_per_block_compile_is_refused_with_the_fast_modules():
    """model.compile=True compiles the block modules, which the fast
    forward never calls: one clear error instead of no effect."""
    model = MODELS.build(dict(type='MaskedMAE', compile=True,
                              backbone=dict(type='FastMAEViT', **VIT),
                              neck=dict(type='MAEPretrainDecoder',
                                        in_chans=3, **NECK), head=HEAD))
    with pytest.raises(ValueError, match='model.compile=True'):
        model.loss(torch.randn(2, 3, 32, 32), [])


def test_cuda_mode_stays_eager_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, 'compile',
                        lambda *a, **k: calls.append(k) or a[0])
    model = mae_model(True)
    model.loss(torch.randn(2, 3, 32, 32), [])
    assert calls == []
    for part in (model.backbone, model.neck):
        part_fn = part._encode if hasattr(part, '_encode') else part._decode
        part_fn.mode = True
    model.loss(torch.randn(2, 3, 32, 32), [])
    assert calls == [dict(fullgraph=True, dynamic=False)] * 2


def test_deepcopy_keeps_its_own_weights():
    """The compiled function takes the module as an argument: a deepcopy
    (e.g. MLO-MAE's unrolled copy) runs its own weights."""
    fast = build('FastMAEViT', compile=True, **VIT)
    twin = copy.deepcopy(fast)
    assert isinstance(twin._encode, CompiledForward)
    assert twin._encode is not fast._encode
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    tokens = fast.embed(torch.randn(1, 3, 32, 32))
    twin._encode.mode = fast._encode.mode = False
    assert not torch.allclose(twin.encode_visible(tokens, None),
                              fast.encode_visible(tokens, None))


@pytest.mark.slow
def test_compiled_whole_equals_eager_and_keeps_keys():
    """torch.compile (inductor on the CPU, fullgraph): the same loss and
    gradients as eager, the same state-dict keys, no graph break."""
    eager = mae_model(True)
    compiled = mae_model(True)
    compiled.load_state_dict(eager.state_dict())
    keys = list(compiled.state_dict())
    for part in (compiled.backbone, compiled.neck):
        (part._encode if hasattr(part, '_encode') else part._decode
         ).mode = True
    images = torch.randn(4, 3, 32, 32)
    losses = []
    for m in (eager, compiled):
        torch.manual_seed(5)
        loss = m.loss(images, [])['loss']
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    ga, gb = grads(eager), grads(compiled)
    assert set(ga) == set(gb)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-4, atol=1e-5,
                                   msg=n)
    assert list(compiled.state_dict()) == keys
    assert compiled.backbone._encode.compiled is not None
    assert compiled.neck._decode.compiled is not None


# ------------------------------------------------- the step around it
class RecordingScaler:
    """Stands for GradScaler (CUDA-only) in AmpOptimWrapper's module."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture
def amp_on_cpu(monkeypatch):
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp, 'GradScaler', RecordingScaler)


def bf16_wrapper(**kwargs):
    from mmengine.optim import build_optim_wrapper
    model = torch.nn.Linear(3, 2)
    cfg = dict(type='BF16AmpOptimWrapper',
               optimizer=dict(type='AdamW', lr=0.1), **kwargs)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mlmask_mm'):
        return model, build_optim_wrapper(model, cfg)


def test_bf16_wrapper_has_no_loss_scaler(amp_on_cpu):
    """bfloat16: GradScaler(enabled=False), so update_params is
    backward + optimizer.step with the unscaled loss (no unscale pass, no
    inf check read back to the host); float16 keeps the dynamic scaler."""
    model, w = bf16_wrapper(dtype='bfloat16', loss_scale='dynamic')
    assert w.cast_dtype is torch.bfloat16
    assert not isinstance(w.loss_scaler, RecordingScaler)
    assert not w.loss_scaler.is_enabled()
    ref = copy.deepcopy(model)
    opt = torch.optim.AdamW(ref.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    w.update_params(model(x).square().sum())
    ref(x).square().sum().backward()
    opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    assert w.state_dict()['loss_scaler'] == {}
    w.load_state_dict(dict(w.optimizer.state_dict(),
                           loss_scaler={'scale': 65536.0}))  # fp16 ckpt
    _, w16 = bf16_wrapper(dtype='float16')
    assert isinstance(w16.loss_scaler, RecordingScaler)
    _, w16 = bf16_wrapper()
    assert isinstance(w16.loss_scaler, RecordingScaler)


def test_bf16_wrapper_refuses_a_loss_scale(amp_on_cpu):
    with pytest.raises(ValueError, match=r'loss_scale=512\.0 with dtype='
                       'bfloat16'):
        bf16_wrapper(dtype='bfloat16', loss_scale=512.)


def test_vitb_config_fast_path_option():
    """The ViT-B/16 config ships mmpretrain's eager modules; the documented
    fast-path options (tools/misc/gpu_acceptance.py FAST_PATH,
    docs/get_started.md) turn it into the fast path with the same keys."""
    from mmengine.config import Config
    from conftest import REPO, load_tool
    import os.path as osp
    path = osp.join(
        REPO, 'configs/mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py')
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == 'MaskableViT'
    assert cfg.model.neck.type == 'MAEPretrainDecoder'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    with torch.device('meta'):
        eager = MODELS.build(cfg.model)
    options = load_tool('misc/gpu_acceptance').FAST_PATH
    from mmengine.config import DictAction
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (
        o.split('=', 1) for o in options)})  # as --cfg-options parses them
    assert cfg.model.backbone.type == 'FastMAEViT'
    assert cfg.model.neck.type == 'FastMAEPretrainDecoder'
    assert cfg.optim_wrapper.type == 'BF16AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.optimizer.fused is True
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert model.backbone._encode.mode == 'cuda'
    assert model.neck._decode.mode == 'cuda'
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in eager.state_dict().items()]


def test_finite_loss_hook_guards_the_unscaled_bf16_step(amp_on_cpu):
    """With tolerance > 0 the hook skips non-finite steps itself unless a
    loss scaler does; in bf16 there is none, so the hook must guard."""
    from types import SimpleNamespace
    from mlmask_mm.engine.hooks.finite_loss_hook import FiniteLossHook
    _, w = bf16_wrapper(dtype='bfloat16')
    FiniteLossHook(tolerance=2).before_train(SimpleNamespace(optim_wrapper=w))
    assert getattr(w, '_finite_guard', False)
    _, w16 = bf16_wrapper(dtype='float16')
    w16.loss_scaler.is_enabled = lambda: True
    FiniteLossHook(tolerance=2).before_train(
        SimpleNamespace(optim_wrapper=w16))
    assert not getattr(w16, '_finite_guard', False)
