"""Does a masker hide the hard patches or the easy ones?

CL-MAE's curriculum (Madan et al., WACV 2024, §3) should move its masks from
easy patches (partner, c = +1) to hard ones (adversary, c = −1).  This
measures where any masker of the package stands, on a batch of images:

* the difficulty of patch i of an image is ℓ_i, the checkpoint's own
  per-patch reconstruction loss under **random** masks at the model's ratio
  (mean over ``draws`` draws, each patch counted where it was masked), so it
  does not depend on the masker being judged;
* ``masked_harder`` = P(ℓ_m > ℓ_k) for a masked patch m and a kept patch k
  of the same image (ties count ½; the Mann–Whitney AUC), averaged over
  images: 0.5 = masks unrelated to difficulty, > 0.5 = hides the hard
  patches (adversary), < 0.5 = hides the easy ones (partner);
* ``loss_masked`` / ``loss_kept`` = mean ℓ of the masked / kept patches and
  their ratio ``masked_over_kept``.

``tools/analysis_tools/mask_difficulty.py`` runs it on checkpoints.
"""
from typing import Dict

import torch

from mlmask_mm.models.maskers import RandomMasker


@torch.no_grad()
def reference_patch_loss(model, inputs: torch.Tensor, draws: int = 8,
                         seed: int = 0) -> torch.Tensor:
    """B x L: mean per-patch loss of ``model`` (a MaskedMAE) over ``draws``
    random masks at its masker's ratio, each patch averaged over the draws
    that masked it (a patch never masked gets NaN)."""
    if draws < 1:
        raise ValueError(f'draws must be >= 1, got {draws}')
    ratio = float(model.masker.mask_ratio)
    random_masker = RandomMasker(mask_ratio=ratio)
    tokens = model.backbone.embed(inputs)
    total = torch.zeros(tokens.shape[:2], dtype=torch.float64,
                        device=inputs.device)
    count = torch.zeros_like(total)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for _ in range(draws):
            result = random_masker(tokens)
            ell = model.per_patch_loss(model.reconstruct(tokens, result),
                                       inputs)
            m = result.mask.to(total)
            total += ell.to(total) * m
            count += m
    finally:
        torch.random.set_rng_state(state)
    return total / count.where(count > 0, torch.full_like(count, float('nan')))


def difficulty_stats(reference: torch.Tensor,
                     mask: torch.Tensor) -> Dict[str, float]:
    """Where the masked patches stand in difficulty (see the module doc).

    Args:
        reference: B x L patch difficulties ℓ (NaN = unknown, left out).
        mask: B x L, 1 = masked, 0 = kept.
    """
    if reference.shape != mask.shape:
        raise ValueError(f'reference {tuple(reference.shape)} and mask '
                         f'{tuple(mask.shape)} differ in shape')
    ell = reference.double()
    known = ~torch.isnan(ell)
    masked = mask.bool() & known
    kept = ~mask.bool() & known
    # per image: P(ℓ_m > ℓ_k) + ½ P(ℓ_m = ℓ_k) over masked m, kept k
    diff = ell.unsqueeze(2) - ell.unsqueeze(1)  # B x L(m) x L(k)
    wins = (diff > 0).double() + 0.5 * (diff == 0).double()
    pairs = (masked.unsqueeze(2) & kept.unsqueeze(1)).double()
    n_pairs = pairs.sum(dim=(1, 2))
    valid = n_pairs > 0
    if not bool(valid.any()):
        raise ValueError('no image has both a masked and a kept patch of '
                         'known difficulty')
    auc = (wins * pairs).sum(dim=(1, 2))[valid] / n_pairs[valid]
    ell0 = ell.nan_to_num(0.)
    loss_masked = float((ell0 * masked).sum() / masked.sum())
    loss_kept = float((ell0 * kept).sum() / kept.sum())
    return dict(masked_harder=float(auc.mean()),
                loss_masked=loss_masked, loss_kept=loss_kept,
                masked_over_kept=loss_masked / loss_kept,
                images=int(valid.sum()))


@torch.no_grad()
def mask_difficulty(model, inputs: torch.Tensor, draws: int = 8,
                    seed: int = 0) -> Dict[str, float]:
    """:func:`difficulty_stats` of the masks ``model.mask(inputs)`` gives,
    against :func:`reference_patch_loss`."""
    reference = reference_patch_loss(model, inputs, draws, seed)
    _, result = model.mask(inputs)
    return difficulty_stats(reference, result.mask)
