"""mlmask_mm/evaluation/mask_content.py and its tool on hand-made maskers
whose answers are known: a fixed position pattern, a masker keeping the
brightest patches (content), one keeping the most textured patches, one
deciding by the image's mean colour, independent random masks.

16 x 16 images, 4 px patches (a 4 x 4 grid), K = 4 kept (r = 0.75).
"""
import copy
import json

import pytest
import torch

from conftest import load_tool
from mlmask_mm.evaluation import mask_content_test
from mlmask_mm.evaluation.checkpoint_images import build_model as load_model
from mlmask_mm.evaluation.checkpoint_images import whole_images
from mlmask_mm.evaluation.mask_content import texture_auc

P, G, K = 4, 4, 4  # patch size, grid side, patches kept


def images(B=32, seed=0):
    return torch.randn(B, 3, P * G, P * G,
                       generator=torch.Generator().manual_seed(seed))


def patch_values(x):
    """B x 3 x H x W → B x L x (3·p·p), patches row-major (written out
    with explicit loops, independently of the module's reshapes)."""
    B = x.shape[0]
    out = torch.empty(B, G * G, 3 * P * P, dtype=x.dtype)
    for i in range(G):
        for j in range(G):
            out[:, i * G + j] = x[:, :, i * P:(i + 1) * P,
                                  j * P:(j + 1) * P].reshape(B, -1)
    return out


def keep_top(values):
    """1 = masked, the K highest values of each row kept."""
    top = values.topk(K, dim=1).indices
    return torch.ones_like(values).scatter_(1, top, 0)


# the hand-made maskers
def first_column(x):
    """A fixed position pattern: keep column 0 of the grid."""
    m = torch.ones(x.shape[0], G, G)
    m[:, :, 0] = 0
    return m.reshape(x.shape[0], -1)


def brightest(x):
    return keep_top(patch_values(x).mean(-1))


def most_textured(x):
    return keep_top(patch_values(x.double()).std(-1))


def by_mean_colour(x):
    """The kept column is decided by the image's mean red value."""
    col = (x[:, 0].mean(dim=(1, 2)) * 40).floor().long() % G
    m = torch.ones(x.shape[0], G, G)
    m[torch.arange(x.shape[0]), :, col] = 0
    return m.reshape(x.shape[0], -1)


def test_fixed_pattern_gives_the_fixed_pattern_values():
    out = mask_content_test(first_column, images(), P, shift=2)
    # nothing changes at any position, whatever the image
    for key in ('flip_same', 'shift_same', 'shuffle_same',
                'mean_colour_same', 'between_images'):
        assert out[key] == 1.0, key
    # column 0 vs its mirror (column 3): 2 of 4 columns differ; vs shifted
    # by 2 (column 2): 2 of 4 columns differ
    assert out['flip_reference'] == out['flip_follow'] == 0.5
    assert out['shift_reference'] == out['shift_follow'] == 0.5
    assert (out['never_kept'], out['always_kept']) == (12, 4)
    assert out['mask_specificity'] == 0.0
    assert 0.35 < out['texture_auc'] < 0.65  # random images: unrelated


def test_content_masker_follows_flip_shift_and_shuffle():
    x = images()
    out = mask_content_test(brightest, x, P, shift=1, seed=3)
    for t in ('flip', 'shift', 'shuffle'):
        assert out[f'{t}_follow'] == 1.0, t
        assert out[f'{t}_same'] == out[f'{t}_reference'] < 0.8, t
    # shift by 1 column by hand: masks of the rolled images vs the rolled
    # masks of the images, from the explicit patch loops
    m = brightest(x).reshape(-1, G, G)
    rolled = brightest(x.roll(P, dims=-1)).reshape(-1, G, G)
    assert torch.equal(rolled, m.roll(1, dims=-1))
    assert out['shift_same'] == pytest.approx(
        (rolled == m).float().mean().item())
    assert out['between_images'] < 0.8
    assert out['never_kept'] == 0 and out['mask_specificity'] > 0.8


def test_texture_masker_has_texture_auc_one():
    out = mask_content_test(most_textured, images(), P)
    assert out['texture_auc'] == 1.0
    assert out['flip_follow'] == out['shift_follow'] == 1.0
    assert out['shuffle_follow'] == 1.0


def test_colour_masker_ignores_content_and_follows_colour():
    """The failure issue 25 found: masks that differ between images (by
    their colour) but stay put when the content moves."""
    out = mask_content_test(by_mean_colour, images(64), P)
    assert out['flip_same'] == out['shift_same'] == 1.0
    assert out['shuffle_same'] == out['mean_colour_same'] == 1.0
    assert out['between_images'] < 0.8 and out['mask_specificity'] > 0.5


def test_random_masks_agree_by_chance():
    g = torch.Generator().manual_seed(0)

    def random_masks(x):
        return keep_top(torch.rand(x.shape[0], G * G, generator=g))

    out = mask_content_test(random_masks, images(256), P)
    # two independent masks agree on r² + (1 − r)² = 0.625 of the decisions
    for key in ('flip_same', 'flip_follow', 'shift_same', 'shuffle_follow',
                'mean_colour_same', 'between_images'):
        assert out[key] == pytest.approx(0.625, abs=0.02), key
    assert out['mask_specificity'] == pytest.approx(1.0, abs=0.05)


def test_texture_auc_by_hand():
    texture = torch.tensor([[1., 2., 3., 4.], [5., 5., 1., 0.]])
    # image 0: kept {4, 3} vs masked {1, 2}: all 4 pairs kept > masked;
    # image 1: kept {5 (pos 0), 1} vs masked {5 (pos 1), 0}:
    #   5v5 tie 0.5, 5v0 1, 1v5 0, 1v0 1 -> 2.5 / 4
    mask = torch.tensor([[1., 1., 0., 0.], [0., 1., 0., 1.]])
    assert texture_auc(mask, texture) == pytest.approx((1 + 2.5 / 4) / 2)
    with pytest.raises(ValueError, match='all its patches'):
        texture_auc(torch.ones(1, 4), texture[:1])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match='at least 2 images'):
        mask_content_test(first_column, images(1), P)
    with pytest.raises(ValueError, match='patch_size=5'):
        mask_content_test(first_column, images(), 5)
    with pytest.raises(ValueError, match='shift=4'):
        mask_content_test(first_column, images(), P, shift=4)
    with pytest.raises(ValueError, match='mask_fn gave masks of shape'):
        mask_content_test(lambda x: torch.ones(x.shape[0], 4), images(), P)


def test_tool_on_a_cl_mae_checkpoint(tmp_path):
    """The tool runs on a checkpoint + config, reads whole images, and
    leaves the config it was given as it was (whole_images copies it)."""
    from test_cl_mae import cl_checkpoint
    cfg_path, ckpt = cl_checkpoint(tmp_path)
    tool = load_tool('analysis_tools/analyze_mask_content')
    out = str(tmp_path / 'c.json')
    row = tool.main([cfg_path, ckpt, '--num-images', '6', '--shift', '1',
                     '--out', out])
    assert row['images'] == 6 and row['curriculum'] == -0.5
    assert 0 <= row['flip_same'] <= 1 and 0 <= row['texture_auc'] <= 1
    assert json.load(open(out))['flip_follow'] == row['flip_follow']
    # whole_images works on a copy of the config
    loaded, loaded_cfg = load_model(cfg_path)
    before = copy.deepcopy(loaded_cfg.train_dataloader.dataset.to_dict())
    whole_images(loaded, loaded_cfg, str(tmp_path / 'images'), 2)
    assert loaded_cfg.train_dataloader.dataset.to_dict() == before
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        tool.main([cfg_path, str(tmp_path / 'missing.pth')])


def test_mean_colour_images_are_flat_with_the_image_mean():
    """The content-removed batch: every pixel of image b is b's mean per
    channel; a masker keeping the brightest patches then keeps by ties
    alone, whatever the image was."""
    x = images(4)
    calls = []

    def recording(batch):
        calls.append(batch.clone())
        return first_column(batch)

    mask_content_test(recording, x, P)
    flat = [c for c in calls if (c.flatten(2).std(-1) < 1e-6).all()]
    assert len(flat) == 1
    expected = x.mean(dim=(2, 3))
    torch.testing.assert_close(flat[0][:, :, 0, 0], expected)
    assert len(calls) == 5  # images, flipped, shifted, shuffled, flat
