"""Representation metrics of Self-Guided MAE's analysis (Shin et al. 2024, §3).

All functions take plain tensors, so they are tested on hand-made inputs:

* feature variance σF (paper eq. 3) = Σ_c Var_i(x̂_ic) over the L tokens of
  an image, x̂ = x / ‖x‖ (how spread the token features are), averaged over
  images;
* similarity variance σS (paper eq. 3) = Var_{i≠j}(cos(x_i, x_j)), averaged
  over images (high when tokens form distinct groups);
* attention distance = Σ_j A_ij ‖p_i − p_j‖ averaged over queries i, in
  patches (how far a layer looks);
* bi-partition gap μ_intra − μ_inter: the mean cosine similarity of token
  pairs inside the same Ncut cluster minus that across the two clusters.
"""
import torch
import torch.nn.functional as F


def feature_variance(features: torch.Tensor) -> torch.Tensor:
    """σF of B x L x C features (scalar): per-channel variances, summed."""
    x = F.normalize(features, dim=-1)
    return x.var(dim=1, unbiased=False).sum(-1).mean()


def similarity_variance(features: torch.Tensor) -> torch.Tensor:
    """σS of B x L x C features (scalar): variance of off-diagonal cosines."""
    x = F.normalize(features, dim=-1)
    sim = x @ x.transpose(1, 2)
    L = sim.shape[-1]
    off = ~torch.eye(L, dtype=torch.bool, device=sim.device)
    return sim[:, off].var(dim=-1, unbiased=False).mean()


def attention_distance(attention: torch.Tensor, grid) -> torch.Tensor:
    """Mean attention distance (patches) of B x L x L attention on an h x w
    patch grid (class token already removed; rows renormalised)."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    pos = torch.stack([ys.flatten(), xs.flatten()], -1).to(attention)
    dist = torch.cdist(pos, pos)
    a = attention / attention.sum(-1, keepdim=True)
    return (a * dist).sum(-1).mean()


def bipartition_gap(features: torch.Tensor,
                    partition: torch.Tensor) -> torch.Tensor:
    """μ_intra − μ_inter of B x L x C features and a B x L bool partition."""
    x = F.normalize(features, dim=-1)
    sim = x @ x.transpose(1, 2)
    same = partition.unsqueeze(-1) == partition.unsqueeze(-2)
    L = sim.shape[-1]
    off = ~torch.eye(L, dtype=torch.bool, device=sim.device)
    intra = (sim * (same & off)).sum((1, 2)) / (same & off).sum((1, 2))
    cross = (~same).sum((1, 2)).clamp_min(1)
    inter = (sim * ~same).sum((1, 2)) / cross
    return (intra - inter).mean()
