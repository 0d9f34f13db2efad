"""MLO-MAE's hypergradient as plain functions over parameter dicts.

MLO-MAE (Guo et al., "Downstream Task Guided Masking Learning in Masked
Autoencoders Using Multi-Level Optimization"), eqs. 1-4 and App. A.  Three
parameter sets: θ1 (MAE encoder + decoder), θ2 (downstream head on frozen
encoder features), φ (masking network), and three losses, given here as
callables over ``{name: tensor}`` dicts (build them with
``torch.func.functional_call``):

    l1(θ1, φ)   level 1, probability-weighted reconstruction Σ m p ℓ / Σ m
    l2(θ1, θ2)  level 2, head loss on the labelled train split
    l3(θ1, θ2)  level 3, head loss on the held-out validation split

One outer iteration takes K level-1 steps θ1^{k+1} = θ1^k − ξ1 ∇θ1 L1^k(θ1^k,
φ) (k = 0 … K−1, θ1' = θ1^K), one level-2 step θ2' = θ2 − ξ2 ∇θ2 L2(θ1', θ2)
and differentiates the validation loss F(φ) = L3(θ1', θ2') through them:

    g1 = ∇θ1 L3(θ1', θ2'),   g2 = ∇θ2 L3(θ1', θ2')
    w  = g1 − ξ2 ∇²θ1θ2 L2(θ1', θ2) g2                     (eq. 3, head term)
    a_K = w;  for k = K−1 … 0:
        h   += ∇²φθ1 L1^k(θ1^k, φ) a_{k+1}                 (masking term)
        a_k  = a_{k+1} − ξ1 ∇²θ1θ1 L1^k(θ1^k, φ) a_{k+1}
    ∇φ F = −ξ1 h                                           (eq. 4, App. A)

ξ1, ξ2 weigh the two paths.  Read as unrolled SGD they are the step sizes;
the official code (betty's ``darts``, identity inverse Hessians) uses
ξ1 = ξ2 = 1, i.e. ∇φ F = −∇²φθ1 L1 [g1 − ∇²θ1θ2 L2 g2], the direct path g1
and the head path with equal weight.  With AdamW only the relative weight of
the paths and the scale against AdamW's ε matter (``docs/mlo_mae.md``).

``unroll='last'`` keeps only the k = K−1 term (θ1^{K−1} treated as a
constant: the cheaper DARTS-style approximation, exact for K = 1).

Second-order products are computed either

* ``mode='exact'``: by double backward, ∇²φθ1 L1 a = ∇φ ⟨∇θ1 L1, a⟩ (and
  ∇θ1 ⟨∇θ1 L1, a⟩ for H1 a); the head term by a double backward through the
  head only, ∇θ1 ⟨∇θ2 L2, g2⟩ (⟨∇θ2 L2, g2⟩ depends on θ1 only through the
  features, so the encoder sees one first-order backward);
* ``mode='finite_difference'``: central differences with ε = r / ‖v‖,

      ∇²φθ1 L1 v ≈ [∇φ L1(θ1 + εv, φ) − ∇φ L1(θ1 − εv, φ)] / 2ε,

  computed in strict fp32 (autocast off, TF32 off) with the same RNG state
  in the + and − evaluations.  The perturbed parameters are new tensors: the
  caller's parameters are never modified.

The callables must be deterministic functions of their arguments for the
formulas to hold: a fixed hard mask, fixed masker input, and dropout
either off or drawing the same masks at ±ε (``same_rng``; MLO-MAE keeps
the head's dropout on in level 3, as the official code; docs/mlo_mae.md,
"Numerical pitfalls").  They must not enter autocast
themselves; the caller decides the precision of the exact parts.

Under DDP, ``reduce`` (an in-place mean over processes of a list of
tensors) is applied to every vector that crosses a level or is used as the
next direction: (g1, g2), the head-term product, each H1 product, and the
final ∇φ F, so that N processes equal one process on the concatenated batch.
"""
import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

Params = Dict[str, Tensor]
Loss = Callable[[Params, Params], Tensor]
Reduce = Callable[[List[Tensor]], None]

MODES = ('exact', 'finite_difference')
UNROLLS = ('exact', 'last')
HEAD_TERMS = ('double_backward', 'finite_difference')


@dataclass
class Hypergradient:
    """Result of :func:`hypergradient`.

    Attributes:
        grad: ∇φ F, one tensor per masker parameter (the masker's gradient).
        g1, g2: ∇θ1 L3 and ∇θ2 L3 at (θ1', θ2').
        w: the bracket g1 − ξ2 ∇²θ1θ2 L2 g2 (the direction a_K).
        head: the head term ξ2 ∇²θ1θ2 L2 g2 of that bracket (the path
            φ → θ1' → θ2' → L3; g1 is the direct path φ → θ1' → L3).
    """
    grad: Params
    g1: Params
    g2: Params
    w: Params
    head: Params

    def head_share(self) -> Tensor:
        """‖ξ2 ∇²θ1θ2 L2 g2‖ / ‖g1‖: the head path against the direct path
        where they are added (θ1 space)."""
        return norm(self.head) / norm(self.g1).clamp_min(1e-30)


def check_options(mode: str, unroll: str, unroll_steps: int,
                  fd_radius: float, head_term: str = 'double_backward'
                  ) -> None:
    """One clear error for a bad hypergradient option."""
    if mode not in MODES:
        raise ValueError(f'hypergrad mode must be one of {MODES}, got '
                         f'{mode!r}')
    if unroll not in UNROLLS:
        raise ValueError(f'hypergrad unroll must be one of {UNROLLS}, got '
                         f'{unroll!r}')
    if not isinstance(unroll_steps, int) or unroll_steps < 1:
        raise ValueError('hypergrad unroll_steps must be an integer >= 1, '
                         f'got {unroll_steps!r}')
    if not fd_radius > 0:
        raise ValueError(f'hypergrad fd_radius must be > 0, got '
                         f'{fd_radius!r}')
    if head_term not in HEAD_TERMS:
        raise ValueError(f'hypergrad head_term must be one of {HEAD_TERMS}, '
                         f'got {head_term!r}')


# --------------------------------------------------------------------------
# small vector algebra over parameter dicts
# --------------------------------------------------------------------------
def leaves(params: Params, requires_grad: bool = True) -> Params:
    """Detached views of ``params`` that are autograd leaves."""
    return {k: v.detach().requires_grad_(requires_grad)
            for k, v in params.items()}


def grads(output: Tensor, params: Params, create_graph: bool = False,
          retain_graph: Optional[bool] = None) -> Params:
    """∇ output w.r.t. each tensor of ``params`` (zeros where unused)."""
    names = list(params)
    out = torch.autograd.grad(
        output, [params[k] for k in names], create_graph=create_graph,
        retain_graph=retain_graph, allow_unused=True, materialize_grads=True)
    return dict(zip(names, out))


def dot(a: Params, b: Params) -> Tensor:
    """⟨a, b⟩ summed over the keys of ``b``."""
    return sum((a[k] * b[k]).sum() for k in b)


def norm(a: Params) -> Tensor:
    return torch.sqrt(sum((v.detach().float()**2).sum() for v in a.values()))


def rms(a: Params) -> Tensor:
    """Per-element root mean square over all tensors of ``a``."""
    return norm(a) / max(sum(v.numel() for v in a.values()), 1)**0.5


def axpy(alpha: float, x: Params, y: Params) -> Params:
    """y + alpha x."""
    return {k: y[k] + alpha * x[k] for k in y}


def _reduce(reduce: Optional[Reduce], *dicts: Params) -> None:
    if reduce is not None:
        reduce([v for d in dicts for v in d.values()])


# --------------------------------------------------------------------------
# precision and randomness for finite differences
# --------------------------------------------------------------------------
@contextlib.contextmanager
def strict_fp32():
    """Autocast off (CPU and CUDA) and TF32 off inside the block."""
    matmul = torch.get_float32_matmul_precision()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision('highest')
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast('cpu', enabled=False), \
                torch.autocast('cuda', enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


class SameRNG:
    """Restore one RNG state (CPU and every initialised CUDA device) before
    each evaluation, so that the ± evaluations draw the same numbers."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = (torch.cuda.get_rng_state_all()
                     if torch.cuda.is_initialized() else None)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


@contextlib.contextmanager
def math_attention():
    """SDPA's math kernel: the only one with double backward."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


# --------------------------------------------------------------------------
# second-order products
# --------------------------------------------------------------------------
def central_difference(grad_at: Callable[[float], Params], v: Params,
                       fd_radius: float, same_rng: bool) -> Optional[Params]:
    """[g(+ε) − g(−ε)] / 2ε with ε = r/‖v‖, where ``grad_at(s)`` is the
    gradient with the parameters moved by s·v; in strict fp32, with the same
    RNG state at both ends.  ``None`` when v = 0 (the product is 0)."""
    v_norm = norm(v)
    if v_norm == 0:
        return None
    eps = fd_radius / v_norm.item()
    rng = SameRNG() if same_rng else None
    out = []
    with torch.enable_grad(), strict_fp32():
        for sign in (1.0, -1.0):
            if rng is not None:
                rng.restore()
            out.append(grad_at(sign * eps))
    return {k: (out[0][k] - out[1][k]) / (2 * eps) for k in out[0]}


def level1_products(l1: Loss, theta1: Params, phi: Params, v: Params,
                    mode: str = 'exact', with_hessian: bool = False,
                    fd_radius: float = 1e-2, same_rng: bool = True):
    """(∇²φθ1 L1 v, ∇²θ1θ1 L1 v or None) at (θ1, φ).

    exact: ∇(φ, θ1) ⟨∇θ1 L1(θ1, φ), v⟩ by double backward.
    finite_difference: [∇ L1(θ1 + εv) − ∇ L1(θ1 − εv)] / 2ε, ε = r/‖v‖,
    in strict fp32 with the same RNG state in both evaluations; only the
    gradients that are asked for are taken (∇φ alone needs no backward
    through the MAE when the masker's input is detached).
    """
    if mode == 'exact':
        t1, p = leaves(theta1), leaves(phi)
        with torch.enable_grad(), math_attention():
            g = grads(l1(t1, p), t1, create_graph=True)
            s = dot(g, v)
            if with_hessian:
                both = grads(s, {**{('phi', k): x for k, x in p.items()},
                                 **{('t1', k): x for k, x in t1.items()}})
                mixed = {k: both[('phi', k)] for k in p}
                hess = {k: both[('t1', k)] for k in t1}
                return mixed, hess
            return grads(s, p), None
    if mode != 'finite_difference':
        raise ValueError(f'unknown hypergradient mode {mode!r}')

    def grad_at(step: float) -> Params:
        t1 = {k: (x.detach() + step * v[k].detach().to(x.dtype)
                  if k in v else x.detach()).requires_grad_(with_hessian)
              for k, x in theta1.items()}
        p = leaves(phi)
        wrt = {**{('phi', k): x for k, x in p.items()}}
        if with_hessian:
            wrt.update({('t1', k): x for k, x in t1.items()})
        return grads(l1(t1, p), wrt)

    diff = central_difference(grad_at, v, fd_radius, same_rng)
    if diff is None:
        zero = {k: torch.zeros_like(x) for k, x in phi.items()}
        return zero, ({k: torch.zeros_like(x) for k, x in theta1.items()}
                      if with_hessian else None)
    mixed = {k: diff[('phi', k)] for k in phi}
    hess = ({k: diff[('t1', k)] for k in theta1} if with_hessian else None)
    return mixed, hess


def head_product(l2: Loss, theta1: Params, theta2: Params, v2: Params,
                 mode: str = 'double_backward', fd_radius: float = 1e-2,
                 same_rng: bool = True) -> Params:
    """∇²θ1θ2 L2(θ1, θ2) v2 = ∇θ1 ⟨∇θ2 L2(θ1, θ2), v2⟩.

    double_backward: the double backward runs through the head only (the
    encoder sees one first-order backward from its features).
    finite_difference: [∇θ1 L2(θ1, θ2 + εv2) − ∇θ1 L2(θ1, θ2 − εv2)] / 2ε
    (two full backwards through the encoder; betty-style), strict fp32.
    """
    if mode == 'double_backward':
        t1, t2 = leaves(theta1), leaves(theta2)
        with torch.enable_grad(), math_attention():
            u = grads(l2(t1, t2), t2, create_graph=True)
            return grads(dot(u, v2), t1)
    if mode != 'finite_difference':
        raise ValueError(f'unknown head_term {mode!r}')

    def grad_at(step: float) -> Params:
        t2 = {k: x.detach() + step * v2[k].detach().to(x.dtype)
              for k, x in theta2.items()}
        t1 = leaves(theta1)
        return grads(l2(t1, t2), t1)

    diff = central_difference(grad_at, v2, fd_radius, same_rng)
    if diff is None:
        return {k: torch.zeros_like(x) for k, x in theta1.items()}
    return diff


# --------------------------------------------------------------------------
# the hypergradient
# --------------------------------------------------------------------------
def hypergradient(l1: Union[Loss, Sequence[Loss]], l2: Loss, l3: Loss,
                  theta1_steps: Sequence[Params], theta1_new: Params,
                  theta2: Params, theta2_new: Params, phi: Params,
                  xi1: float, xi2: float, mode: str = 'exact',
                  unroll: str = 'exact', fd_radius: float = 1e-2,
                  head_term: str = 'double_backward',
                  reduce: Optional[Reduce] = None,
                  same_rng: bool = True) -> Hypergradient:
    """∇φ L3(θ1', θ2') through K level-1 steps and one level-2 step.

    Args:
        l1: the level-1 loss, or one per step (each step's batch and fixed
            mask closed over).
        l2, l3: level-2 (train split) and level-3 (validation) losses.
        theta1_steps: θ1^0 … θ1^{K−1}, where the K level-1 steps were taken
            (with ``unroll='last'`` only the last one is read).
        theta1_new: θ1' = θ1^K, after the steps.
        theta2, theta2_new: the head before and after its step.
        phi: the masking network's parameters.
        xi1, xi2: the weights ξ1, ξ2 of the two products (the step sizes
            of the unrolled SGD steps; ξ1 = ξ2 = 1 is the official code's
            weighting, see ``docs/mlo_mae.md``).
        mode: 'exact' or 'finite_difference' (masking and H1 products).
        unroll: 'exact' (the recursion over all K steps) or 'last'.
        fd_radius: r of ε = r / ‖v‖.
        head_term: 'double_backward' (through the head only) or
            'finite_difference' (betty-style).
        reduce: in-place mean over processes of a list of tensors (DDP).
        same_rng: the same RNG state in the ± evaluations (turning it off
            exists only for the negative test).
    """
    K = len(theta1_steps)
    check_options(mode, unroll, max(K, 1), fd_radius, head_term)
    l1s = list(l1) if isinstance(l1, (list, tuple)) else [l1] * K
    if len(l1s) != K:
        raise ValueError(f'got {len(l1s)} level-1 losses for {K} steps')

    # g1, g2: the validation loss at (θ1', θ2')
    t1, t2 = leaves(theta1_new), leaves(theta2_new)
    with torch.enable_grad():
        g = grads(l3(t1, t2), {**{('t1', k): x for k, x in t1.items()},
                               **{('t2', k): x for k, x in t2.items()}})
    g1 = {k: g[('t1', k)] for k in t1}
    g2 = {k: g[('t2', k)] for k in t2}
    _reduce(reduce, g1, g2)

    # w = g1 − ξ2 ∇²θ1θ2 L2(θ1', θ2) g2
    hv = head_product(l2, theta1_new, theta2, g2, head_term, fd_radius,
                      same_rng)
    _reduce(reduce, hv)
    head = {k: xi2 * v for k, v in hv.items()}
    w = axpy(-1.0, head, g1)

    # h = Σ_k ∇²φθ1 L1^k a_{k+1},  a_k = a_{k+1} − ξ1 H1^k a_{k+1}
    steps = range(K - 1, -1, -1) if unroll == 'exact' else [K - 1]
    a, h = w, None
    for k in steps:
        with_hessian = unroll == 'exact' and k > 0
        mixed, hess = level1_products(l1s[k], theta1_steps[k], phi, a, mode,
                                      with_hessian, fd_radius, same_rng)
        h = mixed if h is None else axpy(1.0, mixed, h)
        if with_hessian:
            _reduce(reduce, hess)
            a = axpy(-xi1, hess, a)
    grad = {k: -xi1 * v for k, v in h.items()}
    _reduce(reduce, grad)
    return Hypergradient(grad=grad, g1=g1, g2=g2, w=w, head=head)


def sgd_unroll(l1: Union[Loss, Sequence[Loss]], theta1: Params, phi: Params,
               xi1: float, steps: int) -> List[Params]:
    """θ1^0 … θ1^K of K plain SGD steps on L1 (detached; for tests and
    benchmarks that need a trajectory the formulas hold for exactly)."""
    l1s = list(l1) if isinstance(l1, (list, tuple)) else [l1] * steps
    out = [{k: v.detach() for k, v in theta1.items()}]
    for k in range(steps):
        t1 = leaves(out[-1])
        with torch.enable_grad():
            g = grads(l1s[k](t1, {n: v.detach() for n, v in phi.items()}),
                      t1)
        out.append({n: (t1[n] - xi1 * g[n]).detach() for n in t1})
    return out
