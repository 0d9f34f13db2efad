"""Self-Guided MAE's relevance from a normalised cut (Shin et al., NeurIPS
2024, §4, eqs. 2-4); see docs/self_guided_mae.md.

For one image's token features X′ (L x C; by default the attention output
A(XW^V) of one encoder block, before its projection, eq. 2):

1. Graph M_ij = cos(x′_i, x′_j) where it exceeds ``tau``, else ``eps``: the
   paper's fully connected graph with negative similarities clamped
   (``tau = 0``); Ncut needs non-negative edges.
2. Normalised cut (eq. 4): y1 = the generalised eigenvector of
   (D − M) y = λ D y for the second-smallest λ, D = diag(Σ_j M_ij)
   (:func:`fiedler_vector`).
3. Bi-partition at mean(y1); the object cluster C is the side holding
   argmax_i |y1_i|.
4. Relevance S_i = cos(mean_{j∈C} x′_j, x′_i) (:func:`object_relevance`).
"""
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def affinity(features: torch.Tensor, tau: float = 0.0,
             eps: float = 1e-5) -> torch.Tensor:
    """B x L x C features → B x L x L graph M (step 1)."""
    x = F.normalize(features, dim=-1)
    cos = x @ x.transpose(1, 2)
    return torch.where(cos > tau, cos, torch.full_like(cos, eps))


@dataclass
class SolverLog:
    """How :func:`fiedler_vector` ended, per image.

    Attributes:
        products: B, products with A + I run for each image.
        converged: B, residual ‖(A + I) v − ρ v‖ below ``tol``.
        stable: B, stopped because its bi-partition had not changed for
            ``patience`` products (not counted when ``converged``).
        hit_cap: B, stopped at ``max_iters`` without either.
    """
    products: torch.Tensor
    converged: torch.Tensor
    stable: torch.Tensor
    hit_cap: torch.Tensor

    def summary(self) -> dict:
        """Scalars for the training log."""
        n = max(len(self.products), 1)
        return dict(
            products_mean=float(self.products.float().mean()),
            products_max=int(self.products.max()),
            converged_share=float(self.converged.sum()) / n,
            stable_share=float(self.stable.sum()) / n,
            cap_share=float(self.hit_cap.sum()) / n)


def fiedler_vector(W: torch.Tensor,
                   tol: float = 1e-4,
                   max_iters: int = 500,
                   block: int = 4,
                   power_steps: int = 3,
                   patience: Optional[int] = 48,
                   generator: Optional[torch.Generator] = None,
                   warn: bool = True) -> Tuple[torch.Tensor, SolverLog]:
    """Batched Ncut eigenvector y1 of (D − W) y = λ D y (step 2).

    Subspace iteration on A + I, A = D^-½ W D^-½ (eigenvalues of A + I lie
    in [0, 2]; its dominant ones are A's largest), with the known top
    eigenvector u0 = √d / ‖√d‖ projected out: ``block`` vectors are
    multiplied ``power_steps`` times by A + I, orthonormalised by
    CholeskyQR and rotated by Rayleigh-Ritz (a ``block`` x ``block`` eigh);
    convergence rate (1 + λ_{block+2}) / (1 + λ_2) per product.  y1 =
    D^-½ v of the leading Ritz vector v.

    Each image stops on its own: when its residual ‖(A + I) v − ρ v‖ is
    below ``tol``, when its bi-partition (sign of y1 − mean y1) has not
    changed for ``patience`` products (``None``: never), or at
    ``max_iters`` products.  Images stopped at the cap are counted in the
    returned :class:`SolverLog` and, with ``warn``, reported by a warning.

    Returns y1 (B x L, unit norm, arbitrary sign) and the log.
    """
    B, L, _ = W.shape
    k = min(block, L - 1)
    device, dtype = W.device, W.dtype
    d = W.sum(-1)
    inv_sqrt_d = d.rsqrt()
    A = inv_sqrt_d.unsqueeze(-1) * W * inv_sqrt_d.unsqueeze(-2)
    A = A + torch.eye(L, dtype=dtype, device=device)
    u0 = F.normalize(d.sqrt(), dim=-1).unsqueeze(-1)  # B x L x 1

    def deflate(V, u):
        return V - u @ (u.transpose(1, 2) @ V)

    def orthonormalise(V):
        """CholeskyQR: V Lc^-T with Lc Lc^T = V^T V (no batched QR)."""
        gram = V.transpose(1, 2) @ V
        jitter = 1e-12 * gram.diagonal(dim1=1, dim2=2).amax(-1)
        gram = gram + jitter.view(-1, 1, 1) * torch.eye(
            k, dtype=dtype, device=device)
        Lc = torch.linalg.cholesky(gram)
        return torch.linalg.solve_triangular(
            Lc.transpose(1, 2), V, upper=True, left=False)

    V = torch.rand(B, L, k, generator=generator, dtype=dtype).to(device)
    V = orthonormalise(deflate(V - 0.5, u0))
    y = torch.zeros(B, L, dtype=dtype, device=device)
    products = torch.zeros(B, dtype=torch.long)
    converged = torch.zeros(B, dtype=torch.bool)
    stable = torch.zeros(B, dtype=torch.bool)
    hit_cap = torch.zeros(B, dtype=torch.bool)
    active = torch.arange(B)           # images still iterating
    side = torch.zeros(B, L, dtype=torch.bool, device=device)
    unchanged = torch.zeros(B, dtype=torch.long)  # products since a change
    it = last = 0  # products so far / at the previous Rayleigh-Ritz step
    Aa, ua, isd = A, u0, inv_sqrt_d
    while True:
        AV = Aa @ V
        it += 1
        ritz_values, Yr = torch.linalg.eigh(V.transpose(1, 2) @ AV)
        V, AV = V @ Yr.flip(-1), AV @ Yr.flip(-1)  # descending order
        v, Av = V[..., 0], AV[..., 0]
        residual = (Av - ritz_values[..., -1:] * v).norm(dim=-1).cpu()
        ya = F.normalize(isd * v, dim=-1)
        sa = ya > ya.mean(-1, keepdim=True)
        prev = side[active]
        same = ((sa == prev).all(-1) | (sa == ~prev).all(-1)).cpu()
        unchanged[active] = torch.where(
            same, unchanged[active] + it - last,
            torch.zeros_like(same, dtype=torch.long))
        last = it
        side[active] = sa
        y[active] = ya
        products[active] = it
        done_conv = residual < tol
        done_stable = (~done_conv & (unchanged[active] >= patience)
                       if patience is not None else
                       torch.zeros_like(done_conv))
        done_cap = ~done_conv & ~done_stable & torch.tensor(it >= max_iters)
        converged[active] = done_conv
        stable[active] = done_stable
        hit_cap[active] = done_cap
        keep = ~(done_conv | done_stable | done_cap)
        if not keep.any():
            break
        if not keep.all():  # compact: iterate on the remaining images only
            active = active[keep]
            idx = keep.nonzero().squeeze(-1).to(device)
            Aa, ua, isd = Aa[idx], ua[idx], isd[idx]
            V, AV = V[idx], AV[idx]
        V = deflate(AV, ua)
        for _ in range(min(power_steps - 1, max_iters - it - 1)):
            V = deflate(Aa @ V, ua)
            it += 1
        V = orthonormalise(V)
    log = SolverLog(products, converged, stable, hit_cap)
    if warn and hit_cap.any():
        warnings.warn(
            f'fiedler_vector: {int(hit_cap.sum())} of {B} graphs stopped at '
            f'max_iters={max_iters} products with neither a residual below '
            f'tol={tol} nor a bi-partition stable for {patience} products; '
            'their y1 is unconverged (raise max_iters)', RuntimeWarning)
    return y, log


def object_relevance(features: torch.Tensor,
                     y1: torch.Tensor) -> torch.Tensor:
    """Steps 3-4: S_i = cos(mean of the object cluster, x′_i), B x L."""
    side = y1 > y1.mean(-1, keepdim=True)
    anchor = y1.abs().argmax(-1, keepdim=True)
    in_object = side == torch.gather(side, 1, anchor)  # side of argmax|y1|
    w = in_object.to(features.dtype).unsqueeze(-1)
    centre = (features * w).sum(1) / w.sum(1)
    return F.cosine_similarity(features, centre.unsqueeze(1), dim=-1)
