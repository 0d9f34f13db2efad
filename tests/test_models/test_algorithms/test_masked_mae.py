"""MaskedMAE with the random masker is mmpretrain's MAE, exactly."""
import copy

import pytest
import torch
from mmpretrain.registry import MODELS as MMPRE_MODELS

from mlmask_mm.registry import MODELS

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def model_cfg(algorithm='MaskedMAE', backbone='MaskableViT', **extra):
    cfg = dict(
        type=algorithm,
        backbone=dict(type=backbone, arch=ARCH, img_size=16, patch_size=4,
                      mask_ratio=0.75),
        neck=dict(type='MAEPretrainDecoder', num_patches=16, patch_size=4,
                  in_chans=3, embed_dim=32, decoder_embed_dim=16,
                  decoder_depth=1, decoder_num_heads=2, mlp_ratio=4.),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=4,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[0] * 3,
                               std=[1] * 3))
    cfg.update(extra)
    return cfg


def build_pair():
    torch.manual_seed(0)
    theirs = MMPRE_MODELS.build(model_cfg('MAE', 'MAEViT'))
    theirs.init_weights()
    ours = MODELS.build(model_cfg(masker=dict(type='RandomMasker',
                                              mask_ratio=0.75)))
    # identical parameters under identical names
    missing, unexpected = ours.load_state_dict(theirs.state_dict(),
                                               strict=False)
    assert not unexpected
    assert all(k.startswith('masker.') for k in missing)
    return ours, theirs


def test_state_dict_keys_match_mmpretrain():
    ours, theirs = build_pair()
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_loss_and_gradients_equal_mmpretrain():
    ours, theirs = build_pair()
    images = torch.randn(4, 3, 16, 16)
    torch.manual_seed(123)
    loss_ours = ours.loss(images, [])['loss']
    torch.manual_seed(123)
    loss_theirs = theirs.loss(images, [])['loss']
    assert torch.equal(loss_ours, loss_theirs)
    loss_ours.backward()
    loss_theirs.backward()
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        if p.grad is not None:
            assert torch.equal(p.grad, theirs_params[name].grad), name


def test_masks_equal_mmpretrain_backbone():
    ours, theirs = build_pair()
    images = torch.randn(3, 3, 16, 16)
    torch.manual_seed(7)
    _, result = ours.mask(images)
    torch.manual_seed(7)
    latent, mask, ids_restore = theirs.backbone(images)
    assert torch.equal(result.mask, mask)
    assert torch.equal(result.ids_restore, ids_restore)
    # MaskableViT.forward(mask=True) keeps MAEViT's behaviour too
    torch.manual_seed(7)
    latent2, mask2, ids2 = ours.backbone(images)
    assert torch.equal(latent2, latent) and torch.equal(mask2, mask)
    # and feature extraction without masking is unchanged
    assert torch.equal(ours.extract_feat(images)[0],
                       theirs.extract_feat(images)[0])


def test_masker_swapped_from_config():
    for masker in (dict(type='BlockMasker', mask_ratio=0.5),
                   dict(type='GridMasker', stride=2)):
        model = MODELS.build(model_cfg(masker=masker))
        loss = model.loss(torch.randn(2, 3, 16, 16), [])['loss']
        assert torch.isfinite(loss)
        assert type(model.masker).__name__ == masker['type']


def test_default_masker_uses_backbone_ratio():
    cfg = model_cfg()
    cfg['backbone']['mask_ratio'] = 0.6
    model = MODELS.build(cfg)
    assert type(model.masker).__name__ == 'RandomMasker'
    assert model.masker.mask_ratio == 0.6


def test_wrong_input_size_is_one_clear_error():
    model = MODELS.build(model_cfg())
    with pytest.raises(ValueError, match=r'24x24 .*img_size=\(16, 16\)'):
        model.loss(torch.randn(1, 3, 24, 24), [])


def test_non_maskable_backbone_rejected():
    with pytest.raises(TypeError, match='MaskableViT'):
        MODELS.build(model_cfg(backbone='MAEViT'))


@pytest.mark.parametrize('img_size,patch_size', [(30, 4), (16, 5)])
def test_patch_grid_error(img_size, patch_size):
    cfg = copy.deepcopy(model_cfg())
    cfg['backbone'].update(img_size=img_size, patch_size=patch_size)
    with pytest.raises(ValueError,
                       match=f'img_size={img_size} is not divisible by '
                       f'patch_size={patch_size}'):
        MODELS.build(cfg)


def test_masker_ratio_is_authoritative():
    cfg = model_cfg(masker=dict(type='GridMasker', stride=3))
    model = MODELS.build(cfg)
    assert model.backbone.mask_ratio == model.masker.mask_ratio == 1 - 1 / 9


@pytest.mark.slow
def test_compiled_model_initialises_and_keeps_its_state_dict_keys():
    """model.compile=True: the Runner's init_weights works and checkpoints
    keep the eager keys (a torch.compile wrapper broke both)."""
    eager = MODELS.build(model_cfg())
    compiled = MODELS.build(model_cfg(compile=True))
    compiled.init_weights()
    assert list(compiled.state_dict()) == list(eager.state_dict())
    compiled.load_state_dict(eager.state_dict())


def test_masker_config_without_ratio_takes_the_backbones():
    cfg = model_cfg(masker=dict(type='BlockMasker'))
    cfg['backbone']['mask_ratio'] = 0.6
    model = MODELS.build(cfg)
    assert model.masker.mask_ratio == model.backbone.mask_ratio == 0.6


def test_subclass_masker_hooks_fill_only_named_arguments():
    # CLMAE: default_masker = CurriculumMasker (a config without type gets
    # it), masker_defaults adds the backbone's width and number of patches
    # (the published module has 4 heads at every size)
    cfg = model_cfg('CLMAE', masker=dict(num_layers=1))
    cfg['backbone']['mask_ratio'] = 0.5
    model = MODELS.build(cfg)
    masker = model.masker
    assert type(masker).__name__ == 'CurriculumMasker'
    assert masker.mask_ratio == model.backbone.mask_ratio == 0.5
    assert len(masker.layers) == 1 and masker.token.shape[-1] == 32
    assert masker.layers[0].attn.num_heads == 4
    assert masker.num_patches == model.backbone.num_patches
    # a masker that does not name an argument is not given it
    # (GridMasker has no mask_ratio / embed_dims argument); CLMAE's own
    # check then refuses a masker without parameters
    with pytest.raises(TypeError, match='learnable masker'):
        MODELS.build(model_cfg('CLMAE', masker=dict(type='GridMasker')))


def test_masker_type_errors_name_the_setting():
    with pytest.raises(ValueError, match=r"model.masker.type='NoSuch'"):
        MODELS.build(model_cfg(masker=dict(type='NoSuch')))


def test_the_maskers_own_ratio_wins_over_the_backbones():
    model = MODELS.build(model_cfg(masker=dict(type='BlockMasker',
                                               mask_ratio=0.5)))
    assert model.masker.mask_ratio == model.backbone.mask_ratio == 0.5
