"""How image-specific a batch of masks is (one number for every masker).

For the batch's 0/1 mask M (B x L, 1 = masked) with mask ratio r,

    mask_specificity = mean_l Var_b(M[:, l]) / (r (1 - r))

with the population variance over the B images at each of the L positions.
Independent random masks of ratio r give ≈ 1 (each column is Bernoulli(r),
variance r(1 - r)); one position pattern shared by every image gives 0.
r is the batch's own fraction of masked patches, so the figure does not
depend on how a masker states its ratio.  Methods log it every logging
interval (every ``MaskedMAE``: random masks too; Self-Guided MAE once
informed masks are on, CL-MAE, MLO-MAE) and
the mask pictures print it in their title.
"""
import torch


def mask_specificity(mask: torch.Tensor) -> torch.Tensor:
    """``mask_specificity`` of a B x L (or B x h x w) 0/1 mask (scalar).

    Returns 0 for a batch of one image or a mask that is all 0 or all 1
    (no pattern can vary then).
    """
    if mask.dim() < 2:
        raise ValueError('mask_specificity: expected a B x L mask, got shape '
                         f'{tuple(mask.shape)}')
    m = mask.detach().flatten(1).double()
    if m.shape[0] < 2:
        return torch.zeros((), dtype=torch.float32, device=mask.device)
    r = m.mean()
    bound = r * (1 - r)
    var = m.var(dim=0, unbiased=False).mean()
    # no branch on a tensor value: no host sync per logged step on a GPU
    return torch.where(bound > 0, var / bound.clamp_min(1e-12),
                       torch.zeros_like(var)).float()
