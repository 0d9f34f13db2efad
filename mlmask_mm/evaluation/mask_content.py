"""Do a masker's masks follow the image's content or only its positions?

``mask_content_test(mask_fn, images, patch_size)`` changes the images in
ways that move their content (flip, shift, shuffle of the patches) or
remove it (each image filled with its mean colour) and compares the masks
(B x L, 1 = masked, row-major over the h x w patch grid):

* ``<t>_same``: share of keep/mask decisions equal *at the same position*
  before and after the transform t;
* ``<t>_follow``: share equal after moving the first mask with the content
  (a masker that follows content: 1);
* ``<t>_reference``: share of the first mask equal to itself moved with the
  content: what ``<t>_same`` would be for a masker that follows content
  (a fixed position pattern gives ``<t>_same`` = 1 instead);
* ``mean_colour_same``: share of decisions equal between an image and the
  same image filled with its mean colour (content removed, colour kept),
  beside ``between_images``, the share equal between two different images
  (image b and b + 1): a mean-colour figure far above it means the masks
  are decided by the colour, not by what is where;
* ``never_kept`` / ``always_kept``: positions of the grid never / always
  kept over the images;
* ``texture_auc``: P(a kept patch is more textured than a masked patch of
  the same image), the texture of a patch being the std of its pixels
  (ties count 1/2); 0.5 = unrelated, 1 = keeps the most textured patches;
* ``mask_specificity``: :mod:`~mlmask_mm.models.utils.mask_specificity`
  of the masks (1 = independent random masks, 0 = one pattern).

A shift is a cyclic roll by ``shift`` patches along the width; the shuffle
permutes each image's patches with its own random permutation (``seed``).
Any masker: ``mask_fn`` maps a B x C x H x W batch to its B x L masks
(:func:`model_mask_fn` makes one from a ``MaskedMAE``).
"""
from typing import Callable, Dict

import torch

from mlmask_mm.models.utils.mask_specificity import mask_specificity

MaskFn = Callable[[torch.Tensor], torch.Tensor]


def model_mask_fn(model, batch_size: int = 64) -> MaskFn:
    """``mask_fn`` of a :class:`~mlmask_mm.models.algorithms.MaskedMAE`
    (its ``mask``: embed + masker), without gradients, in chunks of
    ``batch_size`` images (a deterministic masker's masks do not depend on
    the chunking)."""

    @torch.no_grad()
    def mask_fn(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            model.mask(chunk)[1].mask
            for chunk in images.split(batch_size)
        ])

    return mask_fn


def _patches(images: torch.Tensor, p: int) -> torch.Tensor:
    """B x C x H x W → B x h x w x (C·p·p)."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(B, H // p, W // p, C * p * p)


def _unpatches(patches: torch.Tensor, C: int, p: int) -> torch.Tensor:
    """Inverse of :func:`_patches`."""
    B, h, w, _ = patches.shape
    x = patches.reshape(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, C, h * p, w * p)


def texture_auc(mask: torch.Tensor, texture: torch.Tensor) -> float:
    """Mean over images of P(texture of a kept patch > texture of a masked
    patch), ties 1/2 (the Mann-Whitney AUC); images with every patch kept
    or masked are left out.  ``mask``: B x L, 1 = masked; ``texture``:
    B x L."""
    kept = mask < 0.5
    aucs = []
    for b in range(mask.shape[0]):
        k, m = texture[b][kept[b]], texture[b][~kept[b]]
        if len(k) == 0 or len(m) == 0:
            continue
        diff = k.double()[:, None] - m.double()[None, :]
        aucs.append(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())
    if not aucs:
        raise ValueError('texture_auc: every image has all its patches kept '
                         'or all masked')
    return float(torch.stack(aucs).mean())


@torch.no_grad()
def mask_content_test(mask_fn: MaskFn, images: torch.Tensor, patch_size: int,
                      shift: int = 2, seed: int = 0) -> Dict[str, float]:
    """The figures of the module doc for ``images`` (B x C x H x W, as the
    masker takes them; B ≥ 2) and the patch size of the masker's grid."""
    if images.dim() != 4 or images.shape[0] < 2:
        raise ValueError('mask_content_test: expected a batch of at least 2 '
                         f'images B x C x H x W, got {tuple(images.shape)}')
    B, C, H, W = images.shape
    p = int(patch_size)
    if p < 1 or H % p or W % p:
        raise ValueError(f'mask_content_test: patch_size={patch_size} does '
                         f'not split the {H}x{W} images into whole patches')
    h, w = H // p, W // p
    if not 0 < shift < w:
        raise ValueError(f'mask_content_test: shift={shift} must be between '
                         f'1 and {w - 1} patches (the grid is {h}x{w})')

    def masks(x: torch.Tensor) -> torch.Tensor:
        m = mask_fn(x)
        if tuple(m.shape) != (B, h * w):
            raise ValueError(
                f'mask_content_test: mask_fn gave masks of shape '
                f'{tuple(m.shape)} for {B} images of {h}x{w} patches '
                f'(expected {(B, h * w)}): check patch_size={patch_size}')
        return (m > 0.5).reshape(B, h, w)

    def agree(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a == b).float().mean())

    m = masks(images)
    out = {}
    # flip: the patch at column j goes to column w - 1 - j (patch-aligned)
    flipped = masks(images.flip(-1))
    out.update(flip_same=agree(flipped, m),
               flip_follow=agree(flipped, m.flip(-1)),
               flip_reference=agree(m.flip(-1), m))
    # shift: a cyclic roll by `shift` patches along the width
    rolled = masks(images.roll(shift * p, dims=-1))
    out.update(shift_same=agree(rolled, m),
               shift_follow=agree(rolled, m.roll(shift, dims=-1)),
               shift_reference=agree(m.roll(shift, dims=-1), m))
    # shuffle: patch i of the new image is patch perm[b, i] of the old one
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(h * w, generator=g) for _ in range(B)])
    perm = perm.to(images.device)
    flat = _patches(images, p).reshape(B, h * w, -1)
    shuffled_images = _unpatches(
        torch.gather(flat, 1, perm[..., None].expand_as(flat)).reshape(
            B, h, w, -1), C, p)
    shuffled = masks(shuffled_images).reshape(B, h * w)
    moved = torch.gather(m.reshape(B, h * w), 1, perm)
    out.update(shuffle_same=agree(shuffled, m.reshape(B, h * w)),
               shuffle_follow=agree(shuffled, moved),
               shuffle_reference=agree(moved, m.reshape(B, h * w)))
    # content removed, colour kept
    mean_colour = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    out.update(mean_colour_same=agree(masks(mean_colour.contiguous()), m),
               between_images=agree(m, m.roll(1, dims=0)))
    kept = (~m).reshape(B, h * w)
    out.update(never_kept=int((kept.sum(0) == 0).sum()),
               always_kept=int((kept.sum(0) == B).sum()))
    texture = _patches(images.double(), p).std(dim=-1).reshape(B, h * w)
    out.update(texture_auc=texture_auc(m.reshape(B, h * w).float(), texture),
               mask_specificity=float(mask_specificity(m.reshape(B, h * w))))
    return out
