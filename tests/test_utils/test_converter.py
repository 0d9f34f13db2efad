"""Pretraining checkpoint → backbone checkpoint (tools/model_converters).

Round trips on tiny checkpoints of every pretraining algorithm: the converted
keys load strictly (none missing, none unexpected) into mmpretrain's and
mmseg's VisionTransformer, the tensors are the encoder's, and the mmseg
layout computes the same features as the mmpretrain one (float64).
"""
import copy
import os.path as osp
import sys

import pytest
import torch
from mmengine.registry import init_default_scope

from conftest import REPO, tiny_config
from transfer_helpers import PATCH, PRETRAIN_SIZE, TINY_ARCH, pretrain_tiny_mae

from mlmask_mm.registry import MODELS
from mlmask_mm.utils.backbone_converter import (convert_checkpoint,
                                                convert_state_dict)

sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
import mlmask2backbone  # noqa: E402


def mmpretrain_vit(img_size=PRETRAIN_SIZE, **kwargs):
    from mmpretrain.models import VisionTransformer
    return VisionTransformer(
        arch=dict(TINY_ARCH), img_size=img_size, patch_size=PATCH,
        out_type='featmap', out_indices=(3, ), final_norm=True,
        norm_cfg=dict(type='LN', eps=1e-6), **kwargs)


def mmseg_vit(img_size=PRETRAIN_SIZE, **kwargs):
    from mmseg.models.backbones import VisionTransformer
    return VisionTransformer(
        img_size=img_size, patch_size=PATCH,
        embed_dims=TINY_ARCH['embed_dims'],
        num_layers=TINY_ARCH['num_layers'],
        num_heads=TINY_ARCH['num_heads'],
        mlp_ratio=TINY_ARCH['feedforward_channels'] //
        TINY_ARCH['embed_dims'],
        out_indices=3, qkv_bias=True, patch_bias=True, final_norm=True,
        norm_cfg=dict(type='LN', eps=1e-6), interpolate_mode='bicubic',
        **kwargs)


TARGETS = dict(mmpretrain=mmpretrain_vit, mmseg=mmseg_vit)


def _shrink(cfg):
    cfg.model.backbone.arch = dict(TINY_ARCH)
    return cfg


def clmae_model():
    from test_cl_mae import cl_config
    cfg = cl_config('/unused', '/unused', img_size=PRETRAIN_SIZE,
                    patch_size=PATCH)
    return MODELS.build(_shrink(cfg).model)


def sg_model():
    cfg = _shrink(tiny_config('/unused', '/unused', img_size=PRETRAIN_SIZE,
                              patch_size=PATCH))
    cfg.model.masker = dict(
        type='CompositeMasker', mode='switch',
        maskers=[dict(type='RandomMasker', mask_ratio=0.75),
                 dict(type='SelfGuidedMasker', mask_ratio=0.75)])
    return MODELS.build(cfg.model)


def save_like_mmengine(model, path):
    """What mmengine's CheckpointHook writes, optimizer included."""
    opt = torch.optim.AdamW(model.parameters())
    torch.save(dict(meta=dict(iter=3, epoch=1, experiment_name='x'),
                    state_dict=model.state_dict(),
                    optimizer=opt.state_dict()), path)
    return path


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """{algorithm: pretraining checkpoint}: a real Runner run for MaskedMAE,
    the state dicts of CL-MAE (learned masker) and Self-Guided MAE."""
    init_default_scope('mlmask_mm')
    root = str(tmp_path_factory.mktemp('converter'))
    mae = pretrain_tiny_mae(root)
    torch.manual_seed(0)
    return dict(
        mae=mae,
        clmae=save_like_mmengine(clmae_model(), osp.join(root, 'cl.pth')),
        sg=save_like_mmengine(sg_model(), osp.join(root, 'sg.pth')))


@pytest.mark.parametrize('target', [
    pytest.param(t, marks=[pytest.mark.needs_mmseg] if t == 'mmseg' else [])
    for t in sorted(TARGETS)])
@pytest.mark.parametrize('algorithm', ['mae', 'clmae', 'sg'])
def test_round_trip_strict_load(checkpoints, tmp_path, algorithm, target):
    src = checkpoints[algorithm]
    source = torch.load(src, map_location='cpu', weights_only=True)
    encoder = {k[len('backbone.'):]: v
               for k, v in source['state_dict'].items()
               if k.startswith('backbone.')}
    dropped = {k.split('.')[0] for k in source['state_dict']} - {'backbone'}
    assert 'neck' in dropped and (algorithm != 'clmae' or 'masker' in dropped)

    dst = str(tmp_path / 'backbone.pth')
    meta = convert_checkpoint(src, dst, target=target)
    out = torch.load(dst, map_location='cpu', weights_only=True)
    assert meta['num_tensors'] == len(out['state_dict']) == len(encoder)
    assert 'neck' in meta['dropped_prefixes']

    vit = TARGETS[target]()
    result = vit.load_state_dict(out['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(out['state_dict']) == set(vit.state_dict())
    # every tensor is the encoder's, under its (renamed for mmseg) name
    renames = {'.attn.qkv.weight': '.attn.attn.in_proj_weight',
               '.attn.qkv.bias': '.attn.attn.in_proj_bias',
               '.attn.proj.': '.attn.attn.out_proj.'}
    for k, v in encoder.items():
        if target == 'mmseg':
            for old, new in renames.items():
                k = k.replace(old, new)
        assert torch.equal(out['state_dict'][k], v), k

@pytest.mark.needs_mmseg
def test_mmseg_layout_computes_the_same_features(checkpoints, tmp_path):
    sd = torch.load(checkpoints['mae'], map_location='cpu',
                    weights_only=True)['state_dict']
    a, b = mmpretrain_vit().double(), mmseg_vit().double()
    a.eval()  # (mmseg's VisionTransformer.train returns None)
    b.eval()
    a.load_state_dict(convert_state_dict(sd, 'mmpretrain'), strict=True)
    b.load_state_dict(convert_state_dict(sd, 'mmseg'), strict=True)
    x = torch.randn(2, 3, PRETRAIN_SIZE, PRETRAIN_SIZE, dtype=torch.float64)
    with torch.no_grad():
        fa, fb = a(x)[-1], b(x)[-1]
    assert fa.shape == fb.shape == (2, 32, 2, 2)
    torch.testing.assert_close(fa, fb, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('target', [
    pytest.param(t, marks=[pytest.mark.needs_mmseg] if t == 'mmseg' else [])
    for t in sorted(TARGETS)])
def test_position_embedding_interpolated_by_the_backbone(checkpoints,
                                                         tmp_path, target):
    """Pretrained on a 2x2 grid, loaded into a 4x4 one (64 px)."""
    dst = str(tmp_path / 'backbone.pth')
    convert_checkpoint(checkpoints['mae'], dst, target=target)
    vit = TARGETS[target](
        img_size=64, init_cfg=dict(type='Pretrained', checkpoint=dst))
    vit.init_weights()
    assert vit.pos_embed.shape == (1, 17, 32)
    saved = torch.load(dst, weights_only=True)['state_dict']
    # the class token's embedding is kept, the patch grid resized
    torch.testing.assert_close(vit.pos_embed[:, 0], saved['pos_embed'][:, 0])
    torch.testing.assert_close(vit.state_dict()['layers.3.ln2.weight'],
                               saved['layers.3.ln2.weight'])


def test_command_line(checkpoints, tmp_path, capsys):
    dst = str(tmp_path / 'b.pth')
    mlmask2backbone.main([checkpoints['clmae'], dst, '--target', 'mmseg'])
    assert 'dropped: curriculum_factor, masker, neck, train_iter' in \
        capsys.readouterr().out
    assert 'layers.0.attn.attn.in_proj_weight' in torch.load(
        dst, weights_only=True)['state_dict']


def test_bad_input_fails_clearly(checkpoints, tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        convert_checkpoint(str(tmp_path / 'missing.pth'),
                           str(tmp_path / 'o.pth'))
    with pytest.raises(ValueError, match="target='timm'"):
        convert_checkpoint(checkpoints['mae'], str(tmp_path / 'o.pth'),
                           target='timm')
    vit_only = str(tmp_path / 'vit.pth')
    torch.save({'state_dict': mmpretrain_vit().state_dict()}, vit_only)
    with pytest.raises(ValueError, match='no "backbone." keys'):
        convert_checkpoint(vit_only, str(tmp_path / 'o.pth'))
    sd = copy.copy(torch.load(checkpoints['mae'], weights_only=True)
                   ['state_dict'])
    sd['backbone.ln2.weight'] = torch.ones(32)  # mmpretrain avg_featmap norm
    with pytest.raises(ValueError, match="'ln2.weight'"):
        convert_state_dict(sd, 'mmseg')


# ------------------------------------------- the transfer protocols' layouts
def _new_params(model, target):
    import re
    from mlmask_mm.utils.backbone_converter import NEW_PARAMS
    pats = [re.compile(p + '$') for p in NEW_PARAMS[target]]
    return {k for k, _ in model.named_parameters()
            if any(p.match(k) for p in pats)}


@pytest.mark.needs_mmseg
def test_mmseg_mae_at_init_computes_the_encoders_features(checkpoints,
                                                          tmp_path):
    """mmseg's MAE backbone (BEiT blocks) loaded by its own init_weights
    from the mmseg-mae file: layer scale 1 and zero relative position bias
    leave the encoder's function unchanged, and the k bias it keeps is the
    encoder's too: the features of every block equal mmpretrain's ViT
    (no final norm) in float64."""
    from mmpretrain.models import VisionTransformer
    from mmseg.models.backbones import MAE
    dst = str(tmp_path / 'mae.pth')
    meta = convert_checkpoint(checkpoints['mae'], dst, target='mmseg-mae')
    assert meta['dropped_backbone_keys'] == ['ln1.bias', 'ln1.weight']
    seg = MAE(img_size=PRETRAIN_SIZE, patch_size=PATCH,
              embed_dims=TINY_ARCH['embed_dims'],
              num_layers=TINY_ARCH['num_layers'],
              num_heads=TINY_ARCH['num_heads'], mlp_ratio=2, init_values=1.0,
              out_indices=[0, 1, 2, 3], norm_cfg=dict(type='LN', eps=1e-6),
              pretrained=dst)
    seg.init_weights()
    result = seg.load_state_dict(
        torch.load(dst, weights_only=True)['state_dict'], strict=False)
    assert not result.unexpected_keys
    assert {k for k in result.missing_keys
            if 'relative_position_index' not in k} == _new_params(
                seg, 'mmseg-mae')
    assert len(_new_params(seg, 'mmseg-mae')) == 3 * TINY_ARCH['num_layers']
    ref = VisionTransformer(
        arch=dict(TINY_ARCH), img_size=PRETRAIN_SIZE, patch_size=PATCH,
        out_type='featmap', out_indices=(0, 1, 2, 3), final_norm=False,
        norm_cfg=dict(type='LN', eps=1e-6))
    sd = torch.load(checkpoints['mae'], weights_only=True)['state_dict']
    ref.load_state_dict({k: v for k, v in convert_state_dict(
        sd, 'mmpretrain').items() if not k.startswith('ln1.')}, strict=True)
    seg, ref = seg.double(), ref.double()
    seg.eval()  # (mmseg's BEiT.train returns None)
    ref.eval()
    x = torch.randn(2, 3, PRETRAIN_SIZE, PRETRAIN_SIZE, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(seg(x), ref(x)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # the mutation "gamma not 1" changes the features
    with torch.no_grad():
        seg.layers[0].gamma_1.mul_(0.5)
        assert not torch.allclose(seg(x)[0], ref(x)[0])


def tiny_vitdet(**kwargs):
    from mlmask_mm.models.backbones import ViTDet
    return ViTDet(arch=dict(TINY_ARCH, global_attn_indexes=[1, 3]),
                  img_size=64, patch_size=PATCH,
                  pretrain_img_size=PRETRAIN_SIZE, window_size=2,
                  out_indices=(3, ), **kwargs)


def test_vitdet_is_vitsam_with_vitdets_block_and_position_table(
        checkpoints, tmp_path):
    """Loaded from the vitdet file: in eval mode the same function as
    mmpretrain's ViTSAM (no channel reduction) loaded from the same file,
    whose pre-hook resizes the position table once where ours resizes it
    in every forward (bicubic, from the pretraining grid); only the
    relative positions start from their init (0)."""
    from mmpretrain.models import ViTSAM
    from mlmask_mm.engine.hooks.strict_pretrained_hook import \
        check_pretrained
    dst = str(tmp_path / 'vitdet.pth')
    meta = convert_checkpoint(checkpoints['mae'], dst, target='vitdet')
    assert meta['dropped_backbone_keys'] == ['cls_token', 'ln1.bias',
                                             'ln1.weight']
    saved = torch.load(dst, weights_only=True)['state_dict']
    sd = torch.load(checkpoints['mae'], weights_only=True)['state_dict']
    # the patch positions of the encoder's table, class position dropped
    torch.testing.assert_close(
        saved['pos_embed'].reshape(1, 4, 32),
        sd['backbone.pos_embed'][:, 1:])
    init = dict(type='Pretrained', checkpoint=dst)
    ours = tiny_vitdet(drop_path_rate=0.1, init_cfg=init)
    ours.init_weights()
    assert set(check_pretrained(
        ours, dst, new_params=[r'layers\.\d+\.attn\.rel_pos_[hw]'])) == \
        _new_params(ours, 'vitdet')
    assert ours.pos_embed.shape == (1, 2, 2, 32)
    sam = ViTSAM(arch=dict(TINY_ARCH, global_attn_indexes=[1, 3]),
                 img_size=64, patch_size=PATCH, out_channels=0,
                 window_size=2, out_indices=(3, ), init_cfg=init)
    sam.init_weights()
    assert sam.pos_embed.shape == (1, 4, 4, 32)
    # windows of 2 in blocks 0 and 2, global attention in 1 and 3
    assert [layer.window_size for layer in ours.layers] == [2, 0, 2, 0]
    assert ours.layers[1].attn.rel_pos_h.shape == (7, 16)  # 2 * 4 - 1
    assert ours.layers[0].attn.rel_pos_h.shape == (3, 16)  # 2 * 2 - 1
    ours, sam = ours.double(), sam.double()
    ours.eval()
    sam.eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        (a, ), (b, ) = ours(x), sam(x)
    assert a.shape == (2, 32, 4, 4)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # stochastic depth on the attention branch too (ViTSAM: FFN only),
    # linear from 0 to drop_path_rate
    assert isinstance(ours.layers[0].drop_path, torch.nn.Identity)
    assert ours.layers[3].drop_path.drop_prob == pytest.approx(0.1)
    ours.train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.allclose(ours(x)[0], a)


def test_vitdet_refuses_what_it_fixes():
    with pytest.raises(ValueError, match='out_channels=256'):
        tiny_vitdet(out_channels=256)
    with pytest.raises(ValueError, match='pretrain_img_size=30'):
        from mlmask_mm.models.backbones import ViTDet
        ViTDet(arch=dict(TINY_ARCH, global_attn_indexes=[1, 3]),
               img_size=64, patch_size=PATCH, pretrain_img_size=30)


def test_command_line_names_dropped_keys_and_new_parameters(
        checkpoints, tmp_path, capsys):
    mlmask2backbone.main([checkpoints['mae'], str(tmp_path / 'b.pth'),
                          '--target', 'mmseg-mae'])
    out = capsys.readouterr().out
    assert 'backbone keys dropped: ln1.bias, ln1.weight' in out
    assert r'layers\.\d+\.gamma_[12]' in out


def test_vitdet_block_drops_the_attention_branch_per_sample():
    """Stochastic depth on the attention branch (detectron2 Block): with the
    MLP's own drop path off, some samples keep x + Attn / keep_prob and
    others x alone."""
    from mlmask_mm.models.backbones.vitdet import ViTDetLayer
    layer = ViTDetLayer(embed_dims=8, num_heads=2, feedforward_channels=16,
                        drop_path_rate=0.5, window_size=0,
                        input_size=(2, 2), use_rel_pos=False)
    layer.train()
    layer.ffn.dropout_layer = torch.nn.Identity()
    layer.attn.forward = lambda x: torch.ones_like(x)
    torch.manual_seed(0)
    out = layer(torch.zeros(64, 2, 2, 8))
    zeros, twos = torch.zeros(1, 2, 2, 8), torch.full((1, 2, 2, 8), 2.0)
    dropped = layer.ffn(layer.ln2(zeros), identity=zeros)
    kept = layer.ffn(layer.ln2(twos), identity=twos)  # 1 / keep_prob 0.5
    is_dropped = torch.isclose(out, dropped).flatten(1).all(1)
    is_kept = torch.isclose(out, kept).flatten(1).all(1)
    assert (is_dropped | is_kept).all()
    assert is_dropped.any() and is_kept.any()
