"""mask_specificity against hand-computed values and its two anchors."""
import pytest
import torch

from mlmask_mm.models.utils import mask_specificity


def test_one_shared_pattern_is_zero():
    pattern = (torch.arange(16) % 4 == 0).float()
    assert mask_specificity(pattern.expand(8, 16)).item() == 0.0


def test_independent_random_masks_are_near_one():
    g = torch.Generator().manual_seed(0)
    B, L, keep = 512, 64, 16
    noise = torch.rand(B, L, generator=g)
    mask = torch.ones(B, L)
    mask.scatter_(1, noise.argsort(1)[:, :keep], 0.)
    assert mask_specificity(mask).item() == pytest.approx(1.0, abs=0.03)


def test_hand_computed_value():
    # r = 4/8 = 0.5, r(1-r) = 0.25; column variances: 0.25, 0.25, 0, 0
    # -> mean 0.125 -> 0.5
    mask = torch.tensor([[1., 0., 1., 0.],
                         [0., 1., 1., 0.]])
    assert mask_specificity(mask).item() == pytest.approx(0.5)


def test_grid_masks_and_degenerate_batches():
    mask = torch.tensor([[1., 0.], [0., 1.]]).reshape(1, 2, 2).repeat(3, 1, 1)
    assert mask_specificity(mask).item() == 0.0
    assert mask_specificity(torch.ones(4, 9)).item() == 0.0
    assert mask_specificity(torch.tensor([[1., 0., 1.]])).item() == 0.0
    with pytest.raises(ValueError, match='B x L'):
        mask_specificity(torch.ones(5))


def test_plain_mae_logs_it_beside_its_loss(tmp_path):
    """Every MaskedMAE logs ``mask_specificity`` (the study's column reads
    it from the training log); it is not part of the optimised loss."""
    from mmengine.registry import init_default_scope

    from conftest import tiny_config
    from mlmask_mm.registry import MODELS
    init_default_scope('mlmask_mm')
    cfg = tiny_config(str(tmp_path), str(tmp_path / 'work'))
    model = MODELS.build(dict(cfg.model, data_preprocessor=None))
    model.init_weights()
    torch.manual_seed(0)
    images = torch.randn(32, 3, 16, 16)
    losses = model.loss(images, [])
    assert set(losses) == {'loss', 'mask_specificity'}
    assert not losses['mask_specificity'].requires_grad
    # 32 independent random masks of 16 patches: about 1
    assert 0.8 < losses['mask_specificity'].item() < 1.1
    total, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(total, losses['loss'])
    assert 'mask_specificity' in log_vars
