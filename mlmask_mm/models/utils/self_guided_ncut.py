"""Self-Guided MAE's relevance from a normalised cut (Shin et al., NeurIPS
2024, §4, eqs. 2-4); see docs/self_guided_mae.md.

For one image's token features X′ (L x C; by default the attention output
A(XW^V) of one encoder block, before its projection, eq. 2):

1. Graph M_ij = cos(x′_i, x′_j) where it exceeds ``tau``, else ``eps``: the
   paper's fully connected graph with negative similarities clamped
   (``tau = 0``); Ncut needs non-negative edges.
2. Normalised cut (eq. 4): y1 = the generalised eigenvector of
   (D − M) y = λ D y for the second-smallest λ, D = diag(Σ_j M_ij):
   exactly by a batched float64 ``eigh`` (:func:`fiedler_vector_exact`,
   the generation pass) or by subspace iteration (:func:`fiedler_vector`,
   every training view with ``generation='iteration'``).
3. Bi-partition at mean(y1); the object cluster C is the side holding
   argmax_i |y1_i|.
4. Relevance S_i = cos(mean_{j∈C} x′_j, x′_i) (:func:`object_relevance`).

Features of small or briefly trained models can be nearly the same for
every token (mean token cosine 0.998-0.9999 on the CPU demo): the graph is
then nearly all ones, and every eigenvalue of A = D^-½ M D^-½ but the top
one lies within ~1e-3 of 0.  The solver is built to be exact at any such
scale: it iterates on A − μ I with μ a lower bound of A's spectrum
(:func:`spectrum_floor`, 0 when nothing is clamped), and stops on a
residual relative to the Ritz gap.  :func:`mean_token_cosine` measures the
degeneracy for the warning of the generation pass.
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


def mean_token_cosine(features: torch.Tensor) -> torch.Tensor:
    """Mean cos(x′_i, x′_j) over the token pairs i ≠ j, per image (B):
    (‖Σ_i x̂_i‖² − L) / (L (L − 1)).  Near 1: near-uniform features."""
    x = F.normalize(features.double(), dim=-1)
    L = x.shape[1]
    return (x.sum(1).pow(2).sum(-1) - L) / (L * (L - 1))


def spectrum_floor(features: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """A lower bound μ ≤ λ_min(D^-½ W D^-½) per image (B), for the graph W
    of ``features`` built by :func:`affinity`.

    W = G + E with G = X̂ X̂ᵀ (cosines, positive semi-definite) and E the
    clamping (E_ij = ε − cos_ij where cos_ij ≤ τ, else 0), so
    λ_min(A) ≥ λ_min(D^-½ E D^-½) ≥ −max_i Σ_j |E_ij| / √(d_i d_j)
    (Gershgorin).  0 when nothing is clamped; never below −1.
    """
    x = F.normalize(features.to(W.dtype), dim=-1)
    E = (W - x @ x.transpose(1, 2)).abs()
    inv_sqrt_d = W.sum(-1).rsqrt()
    row = (E * inv_sqrt_d.unsqueeze(-2)).sum(-1) * inv_sqrt_d
    return (-row.amax(-1)).clamp(min=-1.0)


@dataclass
class SolverLog:
    """How :func:`fiedler_vector` ended, per image.

    Attributes:
        products: B, matrix products run for each image (0: exact).
        converged: B, residual ‖A v − ρ v‖ ≤ ``tol`` · (Ritz gap ρ1 − ρ2).
        stable: B, stopped because its bi-partition had not changed for
            ``patience`` products (not counted when ``converged``).
        hit_cap: B, stopped at ``max_iters`` without either (unconverged).
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


def _normalised_adjacency(W: torch.Tensor):
    d = W.sum(-1)
    inv_sqrt_d = d.rsqrt()
    A = inv_sqrt_d.unsqueeze(-1) * W * inv_sqrt_d.unsqueeze(-2)
    return A, d, inv_sqrt_d


def fiedler_vector_exact(W: torch.Tensor) -> Tuple[torch.Tensor, SolverLog]:
    """y1 of (D − W) y = λ D y by a batched float64 ``eigh`` of
    A = D^-½ W D^-½ (the eigenvector of its second-largest eigenvalue,
    y1 = D^-½ v).  Returns y1 (B x L, float64, unit norm, arbitrary sign)
    and a log with 0 products, every image converged."""
    A, _, inv_sqrt_d = _normalised_adjacency(W.double())
    _, vecs = torch.linalg.eigh(A)  # ascending
    y = F.normalize(inv_sqrt_d * vecs[..., -2], dim=-1)
    B = W.shape[0]
    none = torch.zeros(B, dtype=torch.bool)
    return y, SolverLog(torch.zeros(B, dtype=torch.long),
                        torch.ones(B, dtype=torch.bool), none, none.clone())


def fiedler_vector(W: torch.Tensor,
                   tol: float = 1e-4,
                   max_iters: int = 500,
                   block: int = 4,
                   power_steps: int = 3,
                   patience: Optional[int] = 48,
                   floor: Optional[torch.Tensor] = None,
                   generator: Optional[torch.Generator] = None,
                   warn: bool = True,
                   dtype: Optional[torch.dtype] = None
                   ) -> Tuple[torch.Tensor, SolverLog]:
    """Batched Ncut eigenvector y1 of (D − W) y = λ D y (step 2), by
    subspace iteration.

    Iterates on A − u0 u0ᵀ − μ I (formed in float64), A = D^-½ W D^-½,
    u0 = √d / ‖√d‖ its known top eigenvector (also projected out of the
    iterates), μ = ``floor`` (B, a lower bound of A's spectrum,
    :func:`spectrum_floor`; default −1, valid for any graph), so every
    eigenvalue is ≥ 0 and the dominant ones are A's largest after u0.
    ``block`` vectors are multiplied ``power_steps`` times, orthonormalised
    by CholeskyQR and rotated by Rayleigh-Ritz (a ``block`` x ``block``
    eigh); convergence rate (λ_{block+2} − μ) / (λ_2 − μ) per product,
    which does not depend on how close to each other the eigenvalues are
    when μ is close to λ_min.  y1 = D^-½ v of the leading Ritz vector v.

    Each image stops on its own: when its residual ‖A v − ρ v‖ is at most
    ``tol`` times its Ritz gap ρ1 − ρ2 (sin ∠(v, exact) ≲ ``tol``; the
    test scales with the spectrum, so nearly uniform features are not
    "converged" after one product), when its bi-partition (sign of
    y1 − mean y1) has not changed for ``patience`` products (``None``:
    never), or at ``max_iters`` products.  Images stopped at the cap are
    counted in the returned :class:`SolverLog` and, with ``warn``, reported
    by a warning.

    ``dtype``: of the products (default W's); W itself may be float64
    (features whose cosines differ from 1 by ~1e-5 need it: float32 rounds
    them at ~1e-7).

    Returns y1 (B x L, unit norm, arbitrary sign) and the log.
    """
    B, L, _ = W.shape
    k = min(max(block, 2), L - 1)
    device, dtype = W.device, dtype or W.dtype
    # B = A − u0 u0ᵀ − μ I formed in float64 and then rounded: near-uniform
    # graphs have A ≈ u0 u0ᵀ, and products with A itself in float32 would
    # lose the ~1e-3 structure to cancellation
    A, d, inv_sqrt_d = _normalised_adjacency(W.double())
    mu = torch.full((B, ), -1.0, dtype=torch.float64, device=device) \
        if floor is None else floor.to(device, torch.float64)
    u0 = F.normalize(d.sqrt(), dim=-1).unsqueeze(-1)  # B x L x 1
    A = A - u0 @ u0.transpose(1, 2) - mu.view(B, 1, 1) * torch.eye(
        L, dtype=torch.float64, device=device)
    A, u0, inv_sqrt_d = A.to(dtype), u0.to(dtype), inv_sqrt_d.to(dtype)

    def deflate(V, u):
        return V - u @ (u.transpose(1, 2) @ V)

    def orthonormalise(V):
        """CholeskyQR: V Lc^-T with Lc Lc^T = V^T V; Householder QR for the
        images whose block has (numerically) lost rank, e.g. a graph whose
        deflated spectrum has fewer than ``block`` non-zero eigenvalues."""
        gram = V.transpose(1, 2) @ V
        jitter = 10 * torch.finfo(dtype).eps * gram.diagonal(
            dim1=1, dim2=2).amax(-1)
        gram = gram + jitter.view(-1, 1, 1) * torch.eye(
            k, dtype=dtype, device=device)
        Lc, info = torch.linalg.cholesky_ex(gram)
        bad = info != 0
        if bool(bad.any()):
            Lc[bad] = torch.eye(k, dtype=dtype, device=device)
        Q = torch.linalg.solve_triangular(
            Lc.transpose(1, 2), V, upper=True, left=False)
        if bool(bad.any()):
            Q[bad] = torch.linalg.qr(V[bad]).Q
        return Q

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
        AV = deflate(Aa @ V, ua)
        it += 1
        ritz_values, Yr = torch.linalg.eigh(V.transpose(1, 2) @ AV)
        V, AV = V @ Yr.flip(-1), AV @ Yr.flip(-1)  # descending order
        v, Av = V[..., 0], AV[..., 0]
        residual = (Av - ritz_values[..., -1:] * v).norm(dim=-1).cpu()
        gap = (ritz_values[..., -1] - ritz_values[..., -2]).cpu()
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
        done_conv = residual <= tol * gap
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
        V = AV
        for _ in range(min(power_steps - 1, max_iters - it - 1)):
            V = deflate(Aa @ V, ua)
            it += 1
        V = orthonormalise(V)
    log = SolverLog(products, converged, stable, hit_cap)
    if warn and hit_cap.any():
        warnings.warn(
            f'fiedler_vector: {int(hit_cap.sum())} of {B} graphs stopped at '
            f'max_iters={max_iters} products with neither a residual below '
            f'tol={tol} of the Ritz gap nor a bi-partition stable for '
            f'{patience} products; their y1 is unconverged (raise '
            'max_iters)', RuntimeWarning)
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
