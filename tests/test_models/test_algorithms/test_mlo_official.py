"""MLO-MAE settings that follow the official code (Alexiland/MLO-MAE at
b7cfaef): initialisation of the masking network and of the head, trainable
decoder position embedding, dropout in level 3, the masking network in fp32
under bf16 autocast, ``mask_specificity`` in the logs."""
import math

import pytest
import torch
from mmengine.model import BaseModule
from torch import nn

from mlmask_mm.models.utils import hypergrad as hg
from mlmask_mm.models.utils import mask_specificity
from mlmask_mm.registry import MODELS

from test_mlo_mae import (NUM_CLASSES, ToDouble, batch, build, optimizers,
                          snapshot)

# tiny config of test_mlo_mae: 16 px, patch 4 -> L = 16 patches of D = 32
L, D = 16, 32


def official_head(dropout=0.1):
    return dict(type='MLOClsHead', num_classes=NUM_CLASSES, in_channels=D,
                dropout=dropout, loss=dict(type='CrossEntropyLoss'))


def uniform_bound(fan_in):
    """PyTorch's nn.Linear.reset_parameters: kaiming_uniform_(a=√5) gives
    gain √(2/(1+5)) = 1/√3 and bound gain·√(3/fan_in) = 1/√fan_in; the bias
    U(±1/√fan_in) too."""
    return 1 / math.sqrt(fan_in)


def test_masking_network_has_pytorchs_default_init_not_xavier():
    """Official: MLOPatchMasking is built standalone (main_cifar10.py
    l. 293) and never re-initialised, so its layers keep PyTorch's default;
    the MAE's Xavier init_cfg must not reach ours."""
    torch.manual_seed(0)
    model = build(masker='MLOMLPMasker')  # runs init_weights
    first, out = model.masker.mlp[0], model.masker.mlp[2]
    for layer, fan_in, fan_out in ((first, L * D, 16), (out, 16, L)):
        bound = uniform_bound(fan_in)
        w = layer.weight.detach()
        assert w.abs().max() <= bound
        # U(±b) has std b/√3; Xavier would be √(2/(fan_in+fan_out))
        assert w.std().item() == pytest.approx(bound / math.sqrt(3),
                                               rel=0.1)
        xavier = math.sqrt(2 / (fan_in + fan_out))
        assert abs(w.std().item() - xavier) > 0.2 * xavier
        b = layer.bias.detach()
        assert b.abs().max() <= bound and b.abs().max() > 0  # not zeros
    # an explicit init_cfg on the masker is honoured
    torch.manual_seed(0)
    model = build(masker='MLOTokenMasker')
    model.masker.init_cfg = dict(type='Constant', layer='Linear', val=0.5,
                                 bias=0.0)
    model.masker._is_init = False
    model.masker.init_weights()
    assert torch.all(model.masker.mlp[1].weight == 0.5)


def test_official_head_init_std_is_pytorchs_default():
    """Official head (cifar_vit_mlo.py l. 20, FinetuneVisionTransformer,
    built standalone in main_cifar10.py l. 297): nn.Linear(768, 10) at
    PyTorch's default, std 1/√(3·768) = 0.0208; under a parent with the
    MAE's Xavier init_cfg ours keeps it (Xavier: √(2/778) = 0.0507)."""

    class Parent(BaseModule):
        def __init__(self):
            super().__init__(init_cfg=dict(type='Xavier', layer='Linear',
                                           distribution='uniform'))
            self.head = MODELS.build(dict(official_head(), in_channels=768,
                                          num_classes=10))

    torch.manual_seed(0)
    parent = Parent()
    parent.init_weights()
    w = parent.head.fc.weight.detach()
    assert w.std().item() == pytest.approx(0.0208, rel=0.05)
    assert w.abs().max() <= uniform_bound(768)
    assert torch.all(parent.head.norm.weight == 1)
    assert torch.all(parent.head.norm.bias == 0)


def test_learnable_pos_embed_trains_encoder_and_decoder_tables():
    """Official cifar_mae_model.py l. 219-223: pos_embed and
    decoder_pos_embed both requires_grad=True (sin-cos initialised)."""
    model = build(learnable_pos_embed=True)
    params = model.part_params('mae')
    assert 'backbone.pos_embed' in params
    assert 'neck.decoder_pos_embed' in params
    before = model.neck.decoder_pos_embed.detach().clone()
    model.outer_step(batch(), batch(seed=1), batch(seed=2),
                     optimizers(model), update_masker=True)
    assert not torch.equal(before, model.neck.decoder_pos_embed)
    assert 'neck.decoder_pos_embed' not in build().part_params('mae')


def test_level3_runs_the_head_with_dropout_on():
    """Official: betty's Masking.training_step calls the finetune module in
    training mode (main_cifar10.py l. 369-378), so the head's Dropout(0.1)
    is active when L3 and the products are evaluated: every call of the
    head's dropout during outer_step is in training mode."""
    model = build(feature='cls', downstream_head=official_head(0.5))
    modes = []
    model.downstream_head.dropout.register_forward_hook(
        lambda m, i, o: modes.append(m.training))
    model.train()
    model.outer_step(batch(), batch(seed=1), batch(seed=2),
                     optimizers(model), update_masker=True)
    assert len(modes) >= 3  # level 2, L3, the head product
    assert all(modes), modes


def test_dropout_in_level3_same_masks_at_plus_minus_eps():
    """With dropout on, the finite-difference products draw the same
    dropout masks at ±ε (hg.SameRNG): the FD hypergradient agrees with the
    exact one from the same state and seed as r² (dropout masks differing
    between ±ε would give an O(1/ε) error)."""
    grads = {}
    for mode, r in (('exact', 1e-2), ('finite_difference', 1e-3)):
        model = build(feature='cls', downstream_head=official_head(0.3),
                      hypergrad=dict(mode=mode, fd_radius=r,
                                     head_term='finite_difference'
                                     if mode != 'exact' else
                                     'double_backward')).double()
        model.data_preprocessor = ToDouble()
        torch.manual_seed(5)
        model.outer_step(batch(), batch(seed=1), batch(seed=2),
                         optimizers(model, 'sgd', (0.05, 0.5, 1e-3)),
                         update_masker=True)
        grads[mode] = model.last_hypergradient
    ref = grads['exact']
    err = hg.norm({n: grads['finite_difference'][n] - ref[n] for n in ref})
    assert err < 1e-4 * hg.norm(ref)


@pytest.mark.parametrize('masker', ['MLOMLPMasker', 'MLOTokenMasker'])
def test_masking_network_in_fp32_under_bf16_autocast(masker):
    """amp='bf16': p is computed in fp32 (the official code runs in fp32):
    equal to the fp32 network on the same (bf16-rounded) input, and no ties
    that would let index order pick the mask (bf16's 8-bit mantissa puts
    many p near 0.5 on the same value)."""
    torch.manual_seed(0)
    model = build(masker=masker)
    tokens = torch.randn(8, L, D).bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        p = model.masker.probabilities(tokens)
        result = model.masker(tokens)
    assert p.dtype == torch.float32
    torch.testing.assert_close(p, model.masker.network(tokens.float()),
                               rtol=0, atol=0)
    for row in p:
        assert len(torch.unique(row)) == L
    assert result.scores.dtype == torch.float32


def test_mask_specificity_logged_by_outer_step():
    """outer_step logs mask_specificity of the last level-1 mask; the
    statistic gives 0 for one pattern and 1 for masks that are each
    image's own (hand values, mask ratio 0.75)."""
    from mlmask_mm.models.maskers.base import mask_from_ranking
    model = build()
    logs = model.outer_step(batch(n=8), batch(seed=1), batch(seed=2),
                            optimizers(model), update_masker=False)
    assert 0 <= logs['mask_specificity'] <= 8 / 7 + 1e-6
    row = torch.linspace(0.05, 0.95, 16)
    same = row.expand(4, 16).clone()
    assert model.mask_statistics(mask_from_ranking(same, 4, same))[
        'mask_specificity'] == 0
    # rolled by 4: each position masked in 3 of 4 images, Var = 3/16 =
    # r(1 - r) at r = 3/4
    own = torch.stack([row.roll(4 * i) for i in range(4)])
    res = mask_from_ranking(own, 4, own)
    assert model.mask_statistics(res)['mask_specificity'] == \
        pytest.approx(1.0)
    assert mask_specificity(res.mask) == pytest.approx(1.0)
