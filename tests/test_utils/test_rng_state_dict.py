"""mlmask_mm.utils: RNG state round trip, the one backbone_state_dict."""
import random
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mlmask_mm.utils.backbone_converter import (backbone_state_dict,
                                                convert_state_dict)
from mlmask_mm.utils.rng_state import get_rng_state, set_rng_state


def draw():
    return (random.random(), float(np.random.rand()),
            float(torch.rand(1)))


def test_rng_state_round_trip_repeats_every_generator():
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = get_rng_state()
    first = draw()
    assert draw() != first
    set_rng_state(state)
    assert draw() == first


def vit_keys(prefix=''):
    w = torch.zeros(2)
    return OrderedDict((prefix + k, w) for k in (
        'cls_token', 'patch_embed.projection.weight', 'layers.0.ln1.weight'))


def test_one_backbone_state_dict_for_every_layout():
    expected = sorted(vit_keys())
    full = dict(vit_keys('backbone.'), **{'neck.mask_token': torch.zeros(1),
                                         'masker.token': torch.zeros(1)})
    # a Runner checkpoint or its state dict; DDP-saved; compiled blocks
    assert sorted(backbone_state_dict(dict(state_dict=full))) == expected
    assert sorted(backbone_state_dict(full)) == expected
    ddp = {'module.' + k: v for k, v in full.items()}
    assert sorted(backbone_state_dict(ddp)) == expected
    compiled = {k.replace('layers.0.', 'layers.0._orig_mod.'): v
                for k, v in full.items()}
    assert sorted(backbone_state_dict(compiled)) == expected
    # the converter reads compiled checkpoints too (same function)
    assert sorted(convert_state_dict(compiled, 'mmpretrain')) == expected
    # a backbone-only state dict: only where the caller accepts one
    assert sorted(backbone_state_dict(vit_keys(), bare_ok=True)) == expected
    with pytest.raises(ValueError, match='has no "backbone." keys'):
        backbone_state_dict(vit_keys(), source='x.pth')
    with pytest.raises(ValueError, match='not a ViT'):
        convert_state_dict({'backbone.w': torch.zeros(1)})
    with pytest.raises(ValueError, match='holds no state dict'):
        backbone_state_dict(dict(state_dict=[1]))


def test_rng_state_loads_weights_only(tmp_path):
    path = str(tmp_path / 'rng.pth')
    torch.save(get_rng_state(), path)
    state = torch.load(path, weights_only=True)
    first = draw()
    set_rng_state(state)
    assert draw() == first
