"""The masking-module losses of CL-MAE (Madan et al., WACV 2024).

"CL-MAE: Curriculum-Learned Masked Autoencoders", §3 (the masking module and
its training objective) and the supplementary (roles of L_kl and L_div).  The
masking module's loss is

    L_mask = c(t) · L_rec^soft + λ_bin · L_bin + λ_kl · L_kl + λ_div · L_div

with s ∈ (0, 1)^{B x L} the module's per-patch scores (high = keep visible),
term by term as the official code (github.com/ristea/cl-mae,
``models_mae.py``, ``forward_loss_mask``; published weights λ_bin 1.0,
λ_kl 0.1, λ_div 2.0).  Each term is a small pure function of tensors,
vectorised over the batch (no Python loops); see docs/cl_mae.md for the
differences from the official code.
"""
import math

import torch

__all__ = [
    'soft_reconstruction_loss', 'binarization_loss', 'kl_ratio_loss',
    'diversity_loss', 'masking_module_loss'
]

KL_REDUCTIONS = ('sum', 'mean')


def soft_reconstruction_loss(per_patch_loss: torch.Tensor,
                             scores: torch.Tensor,
                             eps: float = 1e-6) -> torch.Tensor:
    """Reconstruction error of the soft full-token pass, weighted by 1 − s.

        L_rec^soft = Σ_{b,i} (1 − s_bi) ℓ_bi / Σ_{b,i} (1 − s_bi)

    (§3: all L tokens go through the MAE scaled by s; a patch counts in the
    loss as much as it is masked.)  Sums over the batch and the patches, like
    MAE's masked loss Σ m ℓ / Σ m with the binary mask m replaced by 1 − s.

    Args:
        per_patch_loss: B x L, ℓ_bi = mean over the patch's pixels of the
            pixel loss (the MAE head's target space).
        scores: B x L keep scores s.
        eps: guards the denominator when every score is 1.
    """
    weight = 1 - scores
    return (weight * per_patch_loss).sum() / weight.sum().clamp_min(eps)


def binarization_loss(scores: torch.Tensor,
                      sigma: float = 0.12) -> torch.Tensor:
    """Push the scores away from 0.5, towards 0 or 1.

        L_bin = σ √(2π) · mean_{b,i} exp(−(s_bi − 0.5)² / (2 σ²))

    a Gaussian bump centred at 0.5 with σ = 0.12 (§3).  Its height σ√(2π)
    (≈ 0.3008 at σ = 0.12) is the official code's: it divides the bump by
    β = 1/(σ√(2π)).
    """
    height = sigma * math.sqrt(2 * math.pi)
    return height * torch.exp(-(scores - 0.5)**2 / (2 * sigma**2)).mean()


def kl_ratio_loss(scores: torch.Tensor, mask_ratio: float,
                  reduction: str = 'sum', eps: float = 1e-6) -> torch.Tensor:
    """Keep the share of visible patches of every image at 1 − r.

        p_b = mean_i s_bi,   q = 1 − r
        L_kl = Σ_b [ p_b log(p_b / q) + (1 − p_b) log((1 − p_b)/(1 − q)) ]

    i.e. KL(Bernoulli(p_b) ‖ Bernoulli(q)) **summed** over the images of the
    batch (of one process), as the official code does (§3 and supplementary:
    without it the module first unmasks, then masks everything).  Its weight
    grows with the batch: at λ_kl = 0.1 and 256 images per GPU (published)
    it is 25.6 times one image's KL.  ``reduction='mean'`` averages over the
    batch instead (B times weaker at the same λ_kl; not published).  q comes
    from the configured ratio (the official code hard-codes 0.25, the same
    at r = 0.75); p_b is clamped to [eps, 1 − eps].
    """
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f'kl reduction must be one of {KL_REDUCTIONS}, got '
                         f'{reduction!r}')
    q = 1 - mask_ratio
    p = scores.mean(dim=1).clamp(eps, 1 - eps)
    kl = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    return kl.sum() if reduction == 'sum' else kl.mean()


def diversity_loss(scores: torch.Tensor, kappa: float = 0.1) -> torch.Tensor:
    """Penalise near-identical masks across the batch.

        L_div = mean_{a<b} exp(−κ ‖s_a − s_b‖₂)

    over all B(B − 1)/2 pairs of images of the batch (κ = 0.1 published;
    §3 and supplementary: without it every image gets the same mask).  One
    ``torch.cdist`` (exact Euclidean mode) and the upper triangle; 0 for a
    batch of one image.
    """
    B = scores.shape[0]
    if B < 2:
        return scores.sum() * 0
    dist = torch.cdist(scores.unsqueeze(0), scores.unsqueeze(0),
                       compute_mode='donot_use_mm_for_euclid_dist')[0]
    a, b = torch.triu_indices(B, B, offset=1, device=scores.device)
    return torch.exp(-kappa * dist[a, b]).mean()


def masking_module_loss(rec_soft: torch.Tensor, scores: torch.Tensor,
                        curriculum: float, mask_ratio: float,
                        lambda_bin: float = 1.0, lambda_kl: float = 0.1,
                        lambda_div: float = 2.0, sigma: float = 0.12,
                        kappa: float = 0.1,
                        kl_reduction: str = 'sum') -> dict:
    """Every term of L_mask and their weighted sum (key ``loss_masker``).

        L_mask = c · L_rec^soft + λ_bin L_bin + λ_kl L_kl + λ_div L_div

    (§3; published weights λ_bin 1, λ_kl 0.1, λ_div 2, L_kl summed over the
    batch).  The unweighted terms are returned too, for the log.
    """
    terms = dict(
        loss_rec_soft=rec_soft,
        loss_bin=binarization_loss(scores, sigma),
        loss_kl=kl_ratio_loss(scores, mask_ratio, kl_reduction),
        loss_div=diversity_loss(scores, kappa))
    total = curriculum * rec_soft + lambda_bin * terms['loss_bin'] \
        + lambda_kl * terms['loss_kl'] + lambda_div * terms['loss_div']
    return dict(loss_masker=total, **terms)
