"""ViTDet's block against a float64 brute force written from the paper and
detectron2's ``projects/ViTDet`` (``modeling/backbone/vit.py``: ``Block``,
``Attention``, ``window_partition``, ``add_decomposed_rel_pos``): the
normalised tokens are padded with zeros to a multiple of the window (the
padding takes part in attention, unmasked), attention runs in each window
with the logits q·k/sqrt(d) + q·R_h[i_h - j_h + w - 1] + q·R_w[i_w - j_w + w - 1]
over the window's local coordinates (global blocks: the whole map), and the
output is cropped back; then the MLP branch."""
import math

import pytest
import torch
import torch.nn.functional as F

from mlmask_mm.models.backbones import ViTDet


def brute_force_block(layer, x):
    """One block on x (B x H x W x C), loops over windows and heads."""
    B, H, W, C = x.shape
    heads = layer.attn.num_heads
    d = C // heads
    h = F.layer_norm(x, (C, ), layer.ln1.weight, layer.ln1.bias,
                     layer.ln1.eps)
    w = layer.window_size or max(H, W)
    Hp, Wp = math.ceil(H / w) * w, math.ceil(W / w) * w
    if layer.window_size:
        h = F.pad(h, (0, 0, 0, Wp - W, 0, Hp - H))  # zeros after the norm
    else:
        Hp, Wp = H, W
    out = torch.zeros(B, Hp, Wp, C, dtype=x.dtype)
    wh, ww = (w, w) if layer.window_size else (H, W)
    coords = [(i, j) for i in range(wh) for j in range(ww)]
    for bi in range(B):
        for top in range(0, Hp, wh):
            for left in range(0, Wp, ww):
                t = h[bi, top:top + wh, left:left + ww].reshape(-1, C)
                qkv = t @ layer.attn.qkv.weight.T + layer.attn.qkv.bias
                q, k, v = qkv.split(C, dim=-1)
                o = torch.zeros_like(t)
                for hd in range(heads):
                    s = slice(hd * d, (hd + 1) * d)
                    logits = torch.empty(len(coords), len(coords),
                                         dtype=x.dtype)
                    for a, (ia, ja) in enumerate(coords):
                        for b, (ib, jb) in enumerate(coords):
                            rh = layer.attn.rel_pos_h[ia - ib + wh - 1]
                            rw = layer.attn.rel_pos_w[ja - jb + ww - 1]
                            qa = q[a, s]
                            logits[a, b] = (qa @ k[b, s]) / math.sqrt(d) + \
                                qa @ rh + qa @ rw
                    o[:, s] = logits.softmax(-1) @ v[:, s]
                o = o @ layer.attn.proj.weight.T + layer.attn.proj.bias
                out[bi, top:top + wh, left:left + ww] = o.reshape(wh, ww, C)
    x = x + out[:, :H, :W]
    y = F.layer_norm(x, (C, ), layer.ln2.weight, layer.ln2.bias,
                     layer.ln2.eps)
    fc1, fc2 = layer.ffn.layers[0][0], layer.ffn.layers[1]
    return x + F.gelu(y @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias


@pytest.mark.parametrize('grid', [4, 5])  # 5: windows of 2 need padding
def test_blocks_match_the_brute_force(grid):
    torch.manual_seed(0)
    model = ViTDet(arch=dict(embed_dims=8, num_layers=2, num_heads=2,
                             feedforward_channels=16,
                             global_attn_indexes=[1]),
                   img_size=16 * grid, patch_size=16, pretrain_img_size=32,
                   window_size=2, drop_path_rate=0.0).double()
    model.eval()
    with torch.no_grad():  # non-zero relative positions (init is 0)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    assert [layer.window_size for layer in model.layers] == [2, 0]
    assert model.layers[0].attn.rel_pos_h.shape == (3, 4)
    assert model.layers[1].attn.rel_pos_h.shape == (2 * grid - 1, 4)
    x = torch.randn(2, grid, grid, 8, dtype=torch.float64)
    with torch.no_grad():
        for layer in model.layers:
            torch.testing.assert_close(layer(x), brute_force_block(layer, x),
                                       rtol=1e-10, atol=1e-10)


def test_position_table_is_interpolated_in_every_forward():
    """The table stays at the pretraining grid (2 x 2 here) and is resized
    (bicubic, align_corners=False, as detectron2's get_abs_pos) to the
    image's grid in the forward: a larger image gets a larger table from
    the same parameters."""
    torch.manual_seed(0)
    model = ViTDet(arch=dict(embed_dims=8, num_layers=1, num_heads=2,
                             feedforward_channels=16,
                             global_attn_indexes=[0]),
                   img_size=64, patch_size=16, pretrain_img_size=32,
                   window_size=2, drop_path_rate=0.0).double()
    model.eval()
    with torch.no_grad():
        model.pos_embed.normal_()
    assert model.pos_embed.shape == (1, 2, 2, 8)
    seen = {}
    model.layers[0].register_forward_pre_hook(
        lambda m, args: seen.__setitem__('x', args[0]))
    img = torch.zeros(1, 3, 96, 96, dtype=torch.float64)  # 6 x 6 grid
    with torch.no_grad():
        model(img)
        patches = model.patch_embed(img)[0].view(1, 6, 6, 8)
    want = F.interpolate(model.pos_embed.permute(0, 3, 1, 2), size=(6, 6),
                         mode='bicubic', align_corners=False)
    # (mmpretrain's resize_pos_embed interpolates in float32)
    torch.testing.assert_close(seen['x'] - patches,
                               want.permute(0, 2, 3, 1), rtol=0, atol=1e-5)
