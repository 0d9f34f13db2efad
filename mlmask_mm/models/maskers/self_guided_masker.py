"""Self-Guided MAE's informed masks (Shin et al., NeurIPS 2024, §4).

Read top to bottom, for one batch of images:

1. Features x'_i of all L patches from encoder block ``feature_layer`` of the
   current model (full image, no grad).
2. Affinity W_ij = cos(x'_i, x'_j) where it exceeds ``tau``, else ``eps``
   (TokenCut's rule: Ncut needs non-negative edges; this keeps the cosine
   strength of the edges that remain instead of binarising them).
3. Normalised cut: y1 = the generalised eigenvector of (D − W) y = λ D y for
   the second-smallest λ, D = diag(Σ_j W_ij).  With A = D^-½ W D^-½, y1 =
   D^-½ v where v is A's eigenvector of the second-largest eigenvalue; we
   find it by power iteration on A + I with the known top eigenvector
   u0 ∝ √d deflated (:func:`fiedler_vector`), batched, stopping on a
   residual tolerance.
4. Bi-partition at mean(y1); the object cluster C is the side holding
   argmax_i |y1_i|.
5. Relevance S_i = cos(mean_{j∈C} x'_j, x'_i); the r·L most relevant patches
   are masked.
6. Hints: a fraction ``hint_ratio`` of the masked set (uniformly, or ∝ S with
   ``hint_mode='relevance'``) is revealed and the same number of the least
   relevant visible patches is masked instead, so exactly
   L − int(L (1 − r)) patches stay masked per image.

Two modes.  ``mode='iteration'`` runs steps 1-5 on every training batch
(one extra no-grad encoder pass over all L patches per step).
``mode='cached'`` reads S from per-image maps that
:class:`~mlmask_mm.engine.hooks.SelfGuidedCacheHook` computes every k epochs
on the whole images and maps through each sample's crop box and flip
(:mod:`.relevance_cache`); only step 6 runs per batch.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking
from .relevance_cache import RelevanceCache

MODES = ('iteration', 'cached')


def affinity(features: torch.Tensor, tau: float = 0.2,
             eps: float = 1e-5) -> torch.Tensor:
    """B x L x C features → B x L x L Ncut graph W (step 2)."""
    x = F.normalize(features, dim=-1)
    cos = x @ x.transpose(1, 2)
    return torch.where(cos > tau, cos, torch.full_like(cos, eps))


def fiedler_vector(W: torch.Tensor,
                   tol: float = 1e-4,
                   max_iters: int = 100,
                   block: int = 4,
                   power_steps: int = 1,
                   generator: Optional[torch.Generator] = None
                   ) -> Tuple[torch.Tensor, int]:
    """Batched Ncut eigenvector y1 of (D − W) y = λ D y (step 3).

    Subspace iteration on A + I, A = D^-½ W D^-½ (the eigenvalues of A + I
    lie in [0, 2], so its dominant ones are A's largest), with the known top
    eigenvector u0 = √d / ‖√d‖ projected out: ``block`` vectors are
    multiplied by A + I, orthonormalised by CholeskyQR, and rotated by
    Rayleigh-Ritz (a ``block`` x ``block`` eigh), which converges at rate
    (1 + λ_{block+2}) / (1 + λ_2) instead of power iteration's
    (1 + λ_3) / (1 + λ_2).  Stops when every graph's residual
    ‖(A + I) v − ρ v‖ of the leading Ritz vector is below ``tol`` or after
    ``max_iters`` products with A + I.  With ``power_steps`` = s > 1 each
    Rayleigh-Ritz step follows s products (deflating after each) instead of
    one: the same convergence per product, a third of the small batched
    factorisations for s = 3, which dominate the time at ViT sizes
    (L ≤ 256, block 4).  Returns y1 = D^-½ v (B x L, unit norm; its sign is
    arbitrary) and the number of products run.
    """
    B, L, _ = W.shape
    k = min(block, L - 1)
    d = W.sum(-1)
    inv_sqrt_d = d.rsqrt()
    A = inv_sqrt_d.unsqueeze(-1) * W * inv_sqrt_d.unsqueeze(-2)
    A = A + torch.eye(L, dtype=W.dtype, device=W.device)
    u0 = F.normalize(d.sqrt(), dim=-1).unsqueeze(-1)  # B x L x 1

    def deflate(V):
        return V - u0 @ (u0.transpose(1, 2) @ V)

    def orthonormalise(V):
        """CholeskyQR: V Lc^-T with Lc Lc^T = V^T V (no batched QR)."""
        gram = V.transpose(1, 2) @ V
        jitter = 1e-12 * gram.diagonal(dim1=1, dim2=2).amax(-1)
        gram = gram + jitter.view(-1, 1, 1) * torch.eye(
            k, dtype=V.dtype, device=V.device)
        Lc = torch.linalg.cholesky(gram)
        return torch.linalg.solve_triangular(
            Lc.transpose(1, 2), V, upper=True, left=False)

    V = torch.rand(B, L, k, generator=generator, dtype=W.dtype)
    V = orthonormalise(deflate(V.to(W.device) - 0.5))
    it = 0  # products with A + I so far
    while True:
        AV = A @ V
        it += 1
        # Rayleigh-Ritz: rotate the block onto the Ritz vectors
        ritz_values, Y = torch.linalg.eigh(V.transpose(1, 2) @ AV)
        V, AV = V @ Y.flip(-1), AV @ Y.flip(-1)  # descending order
        v, Av = V[..., 0], AV[..., 0]
        residual = (Av - ritz_values[..., -1:] * v).norm(dim=-1).max()
        if residual < tol or it >= max_iters:
            break
        V = deflate(AV)
        for _ in range(min(power_steps - 1, max_iters - it - 1)):
            V = deflate(A @ V)
            it += 1
        V = orthonormalise(V)
    return F.normalize(inv_sqrt_d * v, dim=-1), it


def object_relevance(features: torch.Tensor,
                     y1: torch.Tensor) -> torch.Tensor:
    """Steps 4-5: S_i = cos(mean of the object cluster, x'_i), B x L."""
    side = y1 > y1.mean(-1, keepdim=True)
    anchor = y1.abs().argmax(-1, keepdim=True)
    in_object = side == torch.gather(side, 1, anchor)  # side of argmax|y1|
    w = in_object.to(features.dtype).unsqueeze(-1)
    centre = (features * w).sum(1) / w.sum(1)
    return F.cosine_similarity(features, centre.unsqueeze(1), dim=-1)


def informed_ranking(relevance: torch.Tensor, num_mask: int,
                     hint_ratio: float, hint_mode: str = 'uniform',
                     generator: Optional[torch.Generator] = None
                     ) -> torch.Tensor:
    """Step 6: a ranking whose L − num_mask smallest entries stay visible.

    Masked = the num_mask most relevant patches, minus ``n_hint`` hints
    drawn among them (uniform, or ∝ relevance by Gumbel top-k), plus the
    ``n_hint`` least relevant visible patches.
    """
    B, L = relevance.shape
    order = relevance.argsort(dim=-1, descending=True)
    masked = torch.zeros(B, L, dtype=torch.bool, device=relevance.device)
    masked.scatter_(1, order[:, :num_mask], True)
    n_hint = min(int(round(hint_ratio * num_mask)), L - num_mask)
    if n_hint > 0:
        u = torch.rand(B, L, generator=generator,
                       dtype=relevance.dtype).to(relevance.device)
        key = -torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-12)))  # Gumbel
        if hint_mode == 'relevance':
            key = key + torch.log(relevance.clamp_min(1e-6))
        key = key.masked_fill(~masked, float('-inf'))
        hints = key.topk(n_hint, dim=-1).indices
        masked.scatter_(1, hints, False)
        fillers = order[:, num_mask:][:, -n_hint:]  # least relevant visible
        masked.scatter_(1, fillers, True)
    return masked.to(relevance.dtype)  # 1 = masked ranks last


@MODELS.register_module()
class SelfGuidedMasker(BaseMasker):
    """Informed masking from the model's own token clustering.

    ``mode='iteration'`` needs ``context.model`` (a :class:`MaskedMAE`): it
    runs one extra no-grad encoder pass over all patches up to
    ``feature_layer`` (negative = from the end; default −2, the
    second-to-last block).  ``mode='cached'`` needs ``context.data_samples``
    with ``sample_idx``, ``crop_box`` and ``flip`` and a cache filled by
    ``SelfGuidedCacheHook`` (``self.cache``, host memory, not a buffer).

    Args:
        mask_ratio: r.
        mode: ``'iteration'`` or ``'cached'``.
        feature_layer: encoder block whose output gives x'.
        tau, eps: the affinity threshold and floor (step 2).
        hint_ratio: fraction of the masked set revealed as hints; hooks
            change it over training (:meth:`set_hint_ratio`).
        hint_mode: ``'uniform'`` (the paper's best) or ``'relevance'``.
        tol, max_iters: the Fiedler solver's residual stop and cap.
        power_steps: products with (A + I) per solver iteration
            (:func:`fiedler_vector`).
    """

    def __init__(self,
                 mask_ratio: float = 0.75,
                 mode: str = 'iteration',
                 feature_layer: int = -2,
                 tau: float = 0.2,
                 eps: float = 1e-5,
                 hint_ratio: float = 0.05,
                 hint_mode: str = 'uniform',
                 tol: float = 1e-4,
                 max_iters: int = 100,
                 power_steps: int = 3,
                 init_cfg=None) -> None:
        super().__init__(mask_ratio=mask_ratio, init_cfg=init_cfg)
        if hint_mode not in ('uniform', 'relevance'):
            raise ValueError("hint_mode must be 'uniform' or 'relevance', "
                             f'got {hint_mode!r}')
        if mode not in MODES:
            raise ValueError(f'SelfGuidedMasker: mode must be one of {MODES}, '
                             f'got {mode!r}')
        self.mode = mode
        self.cache: Optional[RelevanceCache] = None  # filled by the hook
        self.feature_layer = feature_layer
        self.tau, self.eps = tau, eps
        self.hint_mode = hint_mode
        self.tol, self.max_iters = tol, max_iters
        if not isinstance(power_steps, int) or power_steps < 1:
            raise ValueError('SelfGuidedMasker: power_steps must be an '
                             f'integer >= 1, got {power_steps!r}')
        self.power_steps = power_steps
        self.set_hint_ratio(hint_ratio)
        self.last_solver_iters = 0

    def extra_repr(self) -> str:
        return (f'mask_ratio={self.mask_ratio}, mode={self.mode!r}, '
                f'feature_layer={self.feature_layer}, '
                f'hint_ratio={self.hint_ratio}')

    def set_hint_ratio(self, hint_ratio: float) -> None:
        if not 0 <= hint_ratio < 1:
            raise ValueError(
                f'hint_ratio must be in [0, 1), got {hint_ratio!r}')
        self.hint_ratio = float(hint_ratio)

    @torch.no_grad()
    def token_features(self, model, tokens: torch.Tensor) -> torch.Tensor:
        """Step 1: block ``feature_layer`` output for all L patch tokens."""
        walk = model.backbone.walk(tokens.detach(), upto=self.feature_layer,
                                   norm=False)
        return walk.output[:, 1:]

    @torch.no_grad()
    def relevance(self, features: torch.Tensor) -> torch.Tensor:
        """Steps 2-5 on B x L x C features: S, B x L (float32, no autocast)."""
        x = features.float()
        with torch.autocast(x.device.type, enabled=False):
            y1, self.last_solver_iters = fiedler_vector(
                affinity(x, self.tau, self.eps), self.tol, self.max_iters,
                power_steps=self.power_steps)
            return object_relevance(x, y1)

    @torch.no_grad()
    def mask_from_relevance(self, relevance: torch.Tensor) -> MaskResult:
        """Step 6: exact-count informed mask with hints from S (B x L)."""
        num_keep = self.num_keep(relevance.shape[1])
        ranking = informed_ranking(relevance, relevance.shape[1] - num_keep,
                                   self.hint_ratio, self.hint_mode)
        return mask_from_ranking(ranking, num_keep, scores=relevance)

    def informed_mask(self, features: torch.Tensor) -> MaskResult:
        """Steps 2-6 on given B x L x C features."""
        return self.mask_from_relevance(self.relevance(features))

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        if self.mode == 'cached':
            if self.cache is None:
                raise RuntimeError(
                    "SelfGuidedMasker(mode='cached') has no relevance cache: "
                    'add SelfGuidedCacheHook to custom_hooks')
            if context is None:
                raise ValueError("SelfGuidedMasker(mode='cached') needs a "
                                 'MaskContext with the data samples')
            relevance = self.cache.lookup(
                context.data_samples, context.patch_resolution,
                tokens.device)
            return self.mask_from_relevance(relevance)
        if context is None or context.model is None:
            raise ValueError('SelfGuidedMasker needs the model in its '
                             'MaskContext (MaskedMAE passes it)')
        features = self.token_features(context.model, tokens)
        return self.informed_mask(features)
