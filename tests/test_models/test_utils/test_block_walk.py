"""The one encoder walk (MaskableViT.walk / walk_blocks / walk_decoder)
against the plain block-by-block forward it replaces."""
import pytest
import torch

from mlmask_mm.models.utils.block_walk import walk_blocks, walk_decoder
from mlmask_mm.registry import MODELS


@pytest.fixture
def model():
    from test_masked_mae import model_cfg
    torch.manual_seed(0)
    m = MODELS.build(model_cfg())
    m.init_weights()
    return m.eval()


def by_hand(backbone, tokens, last):
    """What the four hand-written loops did: class token, blocks 0..last."""
    cls = (backbone.cls_token + backbone.pos_embed[:, :1]).expand(
        tokens.shape[0], -1, -1)
    x = torch.cat([cls, tokens], dim=1)
    outs = []
    for layer in backbone.layers[:last + 1]:
        x = layer(x)
        outs.append(x)
    return outs


def test_walk_equals_the_block_loop_and_attention_does_not_change_it(model):
    bb = model.backbone
    tokens = bb.embed(torch.randn(2, 3, 16, 16))
    n = len(bb.layers)
    outs = by_hand(bb, tokens, n - 1)
    plain = bb.walk(tokens, return_blocks=True)
    recorded = bb.walk(tokens, return_blocks=True, return_attention=True,
                       return_values=True)
    for walk in (plain, recorded):
        assert len(walk.blocks) == n
        for a, b in zip(walk.blocks, outs):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(walk.output, bb.norm1(outs[-1]))
    assert len(recorded.attention) == len(recorded.values) == n
    # stopping early: no final norm by default, the block's own output
    stop = bb.walk(tokens, upto=0)
    torch.testing.assert_close(stop.output, outs[0])
    torch.testing.assert_close(
        bb.walk(tokens, upto=-1, norm=False).output, outs[-1])


def test_walk_on_kept_tokens_is_the_mae_encoder(model):
    bb = model.backbone
    tokens = bb.embed(torch.randn(2, 3, 16, 16))
    ids_keep = torch.tensor([[0, 5, 9, 15], [1, 2, 3, 4]])
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1,
                                                                 tokens.shape[-1]))
    expected = bb.norm1(by_hand(bb, kept, len(bb.layers) - 1)[-1])
    torch.testing.assert_close(bb.encode_visible(tokens, ids_keep), expected)
    torch.testing.assert_close(bb.walk(tokens, ids_keep).output, expected)


def test_recorded_attention_is_softmax_qk_of_each_block(model):
    """Each record equals softmax(q kᵀ/√d) recomputed from the block's own
    input and weights, head-averaged; values equal A v per head."""
    bb = model.backbone
    tokens = bb.embed(torch.randn(2, 3, 16, 16))
    walk = bb.walk(tokens, return_blocks=True, return_attention=True,
                   return_values=True)
    cls = (bb.cls_token + bb.pos_embed[:, :1]).expand(2, -1, -1)
    x = torch.cat([cls, tokens], 1)
    for i, block in enumerate(bb.layers):
        attn = block.attn
        h = block.ln1(x)
        B, N, _ = h.shape
        qkv = attn.qkv(h).reshape(B, N, 3, attn.num_heads, attn.head_dims)
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))
        a = (q @ k.transpose(-2, -1) / attn.head_dims**0.5).softmax(-1)
        torch.testing.assert_close(walk.attention[i], a.mean(1))
        av = (a @ v).transpose(1, 2).reshape(B, N, -1)
        torch.testing.assert_close(walk.values[i], av, rtol=1e-5, atol=1e-5)
        x = walk.blocks[i]


def test_walk_decoder_equals_the_neck(model):
    bb = model.backbone
    tokens = bb.embed(torch.randn(2, 3, 16, 16))
    L = tokens.shape[1]
    ids_restore = torch.stack([torch.randperm(L) for _ in range(2)])
    ids_keep = torch.argsort(ids_restore, 1)[:, :4]
    latent = bb.encode_visible(tokens, ids_keep)
    walk = walk_decoder(model.neck, latent, ids_restore, return_attention=True)
    torch.testing.assert_close(walk.output, model.neck(latent, ids_restore))
    assert len(walk.attention) == len(model.neck.decoder_blocks)
    assert walk.attention[0].shape == (2, L + 1, L + 1)


def test_upto_out_of_range_is_refused(model):
    with pytest.raises(ValueError, match='upto=7'):
        walk_blocks(model.backbone.layers, torch.zeros(1, 2, 16), upto=7)
