"""MLO-MAE's level-1 loss (Guo et al., eq. 1): reconstruction weighted by
the masking network's probabilities."""
import torch
from torch import nn


def per_patch_reconstruction_loss(head: nn.Module, pred: torch.Tensor,
                                  images: torch.Tensor) -> torch.Tensor:
    """ℓ_i = mean over the patch's pixels of (x̂_i − t_i)², B x L.

    t = ``head.construct_target(images)``: mmpretrain's ``MAEPretrainHead``
    target (patchified, normalised per patch when ``norm_pix``), so that
    Σ m ℓ / Σ m is exactly that head's L2 loss.
    """
    target = head.construct_target(images)
    return ((pred - target)**2).mean(dim=-1)


def probability_weighted_loss(per_patch: torch.Tensor, mask: torch.Tensor,
                              probs: torch.Tensor) -> torch.Tensor:
    """L1 = Σ_{b,i} m_bi p_bi ℓ_bi / Σ_{b,i} m_bi.

    m = 1 for masked patches, p the probability that the patch is masked.
    The weighting is the only path by which L1 depends on the masking
    network; with p ≡ 1 it is MAE's masked loss.
    """
    return (mask * probs * per_patch).sum() / mask.sum()
