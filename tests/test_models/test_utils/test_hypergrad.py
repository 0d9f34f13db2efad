"""MLO-MAE hypergradient (mlmask_mm.models.utils.hypergrad) against brute force.

A tiny float64 three-level problem with the structure of MLO-MAE: a
tanh "MAE" θ1 reconstructing patches under a fixed hard mask, a masking
network φ giving p = sigmoid(z W + b) from a fixed (detached) input z, the
probability-weighted loss L1 = Σ m p ℓ / Σ m, and a linear head θ2 on the
mean-pooled encoder features (cross-entropy on a train and a val split).
"""
import threading

import pytest
import torch
import torch.nn.functional as F

from mlmask_mm.models.utils import hypergrad as hg

B, L, P, H, D0, C = 4, 6, 5, 7, 3, 3
XI1, XI2 = 0.3, 0.7  # distinct: a swapped ξ1/ξ2 must fail


def make_problem(seed=0, dropout=0.0, batches=1):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) *
                scale)

    theta1 = dict(We=rnd(P, H, scale=0.5), be=rnd(H, scale=0.1),
                  Wd=rnd(H, P, scale=0.5))
    theta2 = dict(Wh=rnd(H, C, scale=0.5), bh=rnd(C, scale=0.1))
    phi = dict(Wm=rnd(D0, scale=0.7), bm=rnd(1, scale=0.1))

    def mae_batch():
        X = rnd(B, L, P)
        z = rnd(B, L, D0)
        ranks = torch.rand(B, L, generator=g).argsort(1).argsort(1)
        m = (ranks >= 2).double()  # 4 of 6 patches masked
        return X, z, m

    def l1_of(X, z, m):
        def l1(t1, p):
            probs = torch.sigmoid(z @ p['Wm'] + p['bm'])
            h = torch.tanh(((1 - m)[..., None] * X) @ t1['We'] + t1['be'])
            if dropout:
                h = F.dropout(h, dropout, training=True)
            ctx = h.mean(1, keepdim=True)
            pred = torch.tanh(h + ctx) @ t1['Wd']
            ell = ((pred - X)**2).mean(-1)
            return (m * probs * ell).sum() / m.sum()
        return l1

    def features(t1, X):
        return torch.tanh(X @ t1['We'] + t1['be']).mean(1)

    def cls_loss(X, y):
        def loss(t1, t2):
            return F.cross_entropy(features(t1, X) @ t2['Wh'] + t2['bh'], y)
        return loss

    l1s = [l1_of(*mae_batch()) for _ in range(batches)]
    Xtr, ytr = rnd(8, L, P), torch.randint(0, C, (8, ), generator=g)
    Xva, yva = rnd(8, L, P), torch.randint(0, C, (8, ), generator=g)
    return dict(theta1=theta1, theta2=theta2, phi=phi, l1s=l1s,
                l2=cls_loss(Xtr, ytr), l3=cls_loss(Xva, yva),
                features=features, data=(Xtr, ytr, Xva, yva))


def trajectory(pb, K, xi1=XI1, xi2=XI2, l2=None):
    l1s = pb['l1s'] if len(pb['l1s']) == K else pb['l1s'] * K
    traj = hg.sgd_unroll(l1s, pb['theta1'], pb['phi'], xi1, K)
    t1 = hg.leaves(traj[-1], False)
    t2 = hg.leaves(pb['theta2'])
    g2 = hg.grads((l2 or pb['l2'])(t1, t2), t2)
    theta2_new = {k: (pb['theta2'][k] - xi2 * g2[k]).detach() for k in t2}
    return l1s, traj, theta2_new


def run_hg(pb, K, mode='exact', unroll='exact', xi1=XI1, xi2=XI2, l3=None,
           **kwargs):
    l1s, traj, theta2_new = trajectory(pb, K, xi1, xi2)
    return hg.hypergradient(
        l1s, pb['l2'], l3 or pb['l3'], traj[:-1], traj[-1], pb['theta2'],
        theta2_new, pb['phi'], xi1, xi2, mode=mode, unroll=unroll,
        **kwargs).grad


def unrolled_objective(pb, K, xi1=XI1, xi2=XI2, unroll='exact', l3=None):
    """F(φ) = L3(θ1^K(φ), θ2'(φ)) by explicit differentiable SGD steps.

    ``unroll='last'``: θ1^{K-1} is taken as a constant (only the last step
    depends on φ)."""
    l1s = pb['l1s'] if len(pb['l1s']) == K else pb['l1s'] * K
    l3 = l3 or pb['l3']

    def F_(phi):
        if unroll == 'last':
            t = hg.sgd_unroll(l1s[:K - 1], pb['theta1'], pb['phi'], xi1,
                              K - 1)[-1]
            start = K - 1
        else:
            t, start = dict(pb['theta1']), 0
        t = hg.leaves(t)
        for k in range(start, K):
            g = hg.grads(l1s[k](t, phi), t, create_graph=True)
            t = {n: t[n] - xi1 * g[n] for n in t}
        t2 = hg.leaves(pb['theta2'])
        g2 = hg.grads(pb['l2'](t, t2), t2, create_graph=True)
        t2 = {n: t2[n] - xi2 * g2[n] for n in t2}
        return l3(t, t2)
    return F_


def reference(pb, K, **kwargs):
    phi = hg.leaves(pb['phi'])
    return hg.grads(unrolled_objective(pb, K, **kwargs)(phi), phi)


def brute_force(pb, K, h=1e-6, **kwargs):
    F_ = unrolled_objective(pb, K, **kwargs)
    out = {}
    for name, value in pb['phi'].items():
        grad = torch.zeros_like(value)
        for i in range(value.numel()):
            vals = []
            for s in (1, -1):
                phi = {k: v.clone() for k, v in pb['phi'].items()}
                phi[name].view(-1)[i] += s * h
                with torch.enable_grad():
                    vals.append(F_(phi).item())
            grad.view(-1)[i] = (vals[0] - vals[1]) / (2 * h)
        out[name] = grad
    return out


def rel_err(a, b):
    """‖a − b‖ / ‖b‖ over all tensors of the dicts."""
    num = sum(((a[k] - b[k])**2).sum() for k in b).sqrt()
    return (num / sum((b[k]**2).sum() for k in b).sqrt()).item()


def assert_close(a, b, rtol, atol=0.0):
    """Elementwise for rtol < 1e-6 (exact comparisons); otherwise relative
    to the whole vector, ‖a − b‖ ≤ rtol ‖b‖ (finite differences: an element
    much smaller than the vector carries the vector's absolute error)."""
    if rtol < 1e-6:
        for k in b:
            torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol)
    else:
        err = rel_err(a, b)
        assert err <= rtol, f'relative error {err:.3g} > {rtol}'


@pytest.mark.parametrize('K', [1, 3])
def test_reference_equals_brute_force(K):
    pb = make_problem(batches=K)
    ref = reference(pb, K)
    assert hg.norm(ref) > 1e-4  # a real signal, not zero
    assert_close(ref, brute_force(pb, K), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize('K', [1, 3])
def test_exact_mode_equals_unrolled_autograd(K):
    pb = make_problem(batches=K)
    assert_close(run_hg(pb, K, 'exact'), reference(pb, K), rtol=1e-10,
                 atol=1e-14)


@pytest.mark.parametrize('K', [1, 3])
def test_finite_difference_mode_equals_unrolled_autograd(K):
    pb = make_problem(batches=K)
    ref = reference(pb, K)
    got = run_hg(pb, K, 'finite_difference', fd_radius=1e-2)
    assert_close(got, ref, rtol=1e-4, atol=1e-8)
    # the FD head term (betty-style) agrees too
    got = run_hg(pb, K, 'finite_difference', fd_radius=1e-2,
                 head_term='finite_difference')
    assert_close(got, ref, rtol=1e-3, atol=1e-8)


@pytest.mark.parametrize('mode', ['exact', 'finite_difference'])
def test_last_step_approximation(mode):
    K = 3
    pb = make_problem(batches=K)
    ref_last = reference(pb, K, unroll='last')
    got = run_hg(pb, K, mode, unroll='last')
    assert_close(got, ref_last, rtol=1e-10 if mode == 'exact' else 1e-4,
                 atol=1e-8)
    # an approximation: it differs from the full recursion for K > 1
    assert rel_err(ref_last, reference(pb, K)) > 1e-3
    # and equals it for K = 1
    pb1 = make_problem()
    assert_close(run_hg(pb1, 1, mode, unroll='last'), reference(pb1, 1),
                 rtol=1e-10 if mode == 'exact' else 1e-4, atol=1e-8)


@pytest.mark.parametrize('mode', ['exact', 'finite_difference'])
def test_masking_path_alone(mode):
    """ξ2 = 0: only φ → θ1' → L3 directly (w = g1)."""
    pb = make_problem()
    ref = reference(pb, 1, xi2=0.0)
    assert hg.norm(ref) > 1e-4
    assert_close(run_hg(pb, 1, mode, xi2=0.0), ref,
                 rtol=1e-10 if mode == 'exact' else 1e-4, atol=1e-10)


@pytest.mark.parametrize('mode', ['exact', 'finite_difference'])
@pytest.mark.parametrize('head_term', ['double_backward',
                                       'finite_difference'])
def test_head_path_alone(mode, head_term):
    """L3 sees θ1 only through θ2' (g1 = 0): the head term alone."""
    pb = make_problem()
    Xva, yva = pb['data'][2:]

    def l3(t1, t2):
        f = pb['features']({k: v.detach() for k, v in t1.items()}, Xva)
        return F.cross_entropy(f @ t2['Wh'] + t2['bh'], yva)
    ref = reference(pb, 1, l3=l3)
    assert hg.norm(ref) > 1e-4
    l1s, traj, theta2_new = trajectory(pb, 1)
    res = hg.hypergradient(l1s, pb['l2'], l3, traj[:-1], traj[-1],
                           pb['theta2'], theta2_new, pb['phi'], XI1, XI2,
                           mode=mode, head_term=head_term)
    assert hg.norm(res.g1) == 0
    if mode == 'exact' and head_term == 'double_backward':
        assert_close(res.grad, ref, rtol=1e-10, atol=1e-14)
        return
    # central differences: O(r²) truncation error (1.4e-4 here at r = 1e-2,
    # this tiny tanh model is strongly curved); r = 1e-3 must shrink it ~r²
    err = rel_err(res.grad, ref)
    assert err < 3e-4
    fine = hg.hypergradient(l1s, pb['l2'], l3, traj[:-1], traj[-1],
                            pb['theta2'], theta2_new, pb['phi'], XI1, XI2,
                            mode=mode, head_term=head_term, fd_radius=1e-3)
    assert rel_err(fine.grad, ref) < err / 30


def betty_darts(loss_of, upper, lower, vector, r=1e-2):
    """betty's ``darts`` best-response product, written here from its
    definition (leopard-ai/betty, betty/hypergradient/darts.py): move the
    problem's parameters ``upper`` by ±εv (ε = r/‖v‖), take the gradient of
    its loss w.r.t. the parameters ``lower`` of the problem below, return
    (∇⁻ − ∇⁺)/2ε = −∇²(lower, upper) L · v; no learning-rate factor."""
    eps = r / torch.sqrt(sum((v**2).sum() for v in vector.values()))
    out = []
    for s in (1.0, -1.0):
        up = {k: x + s * eps * vector[k] for k, x in upper.items()}
        low = hg.leaves(lower)
        with torch.enable_grad():
            out.append(hg.grads(loss_of(up, low), low))
    return {k: (out[1][k] - out[0][k]) / (2 * eps) for k in out[0]}


@pytest.mark.parametrize('mode', ['exact', 'finite_difference'])
def test_official_weighting_equals_bettys_two_paths(mode):
    """ξ1 = ξ2 = 1 is the official code's hypergradient: betty's paths
    [mask, pretrain, mask] (direct) and [mask, finetune, pretrain, mask]
    (head), each a chain of darts products, summed (Problem.backward adds
    the paths' gradients).  Both products are taken where ours are (θ1
    before the step, θ2 before the step; betty uses the current ones)."""
    pb = make_problem()
    l1s, traj, theta2_new = trajectory(pb, 1, xi1=1.0, xi2=1.0)
    t1, t2 = hg.leaves(traj[-1]), hg.leaves(theta2_new)
    with torch.enable_grad():
        g = hg.grads(pb['l3'](t1, t2), {**{('1', k): v for k, v in t1.items()},
                                        **{('2', k): v for k, v in t2.items()}})
    g1 = {k: g[('1', k)] for k in t1}
    g2 = {k: g[('2', k)] for k in t2}
    l1 = l1s[0]
    # path 1: jvp = g1, then darts(pretrain -> mask)
    direct = betty_darts(lambda up, low: l1(up, low), traj[0], pb['phi'], g1)
    # path 2: jvp = g2, darts(finetune -> pretrain), darts(pretrain -> mask)
    via_head = betty_darts(lambda up, low: pb['l2'](low, up), pb['theta2'],
                           traj[-1], g2)
    head = betty_darts(lambda up, low: l1(up, low), traj[0], pb['phi'],
                       via_head)
    official = {k: direct[k] + head[k] for k in direct}
    ours = hg.hypergradient(l1s, pb['l2'], pb['l3'], traj[:-1], traj[-1],
                            pb['theta2'], theta2_new, pb['phi'], 1.0, 1.0,
                            mode=mode)
    assert_close(ours.grad, official, rtol=1e-3, atol=1e-10)
    # both paths carry weight: the head path is not negligible
    assert 0.05 < (hg.norm(head) / hg.norm(direct)).item() < 20
    assert 0.05 < ours.head_share().item() < 20


@pytest.mark.parametrize('mode', ['exact', 'finite_difference'])
def test_sign_convention(mode):
    """A small step along −∇φF lowers the unrolled validation loss."""
    K = 2
    pb = make_problem(batches=K)
    grad = run_hg(pb, K, mode)
    F_ = unrolled_objective(pb, K)
    with torch.enable_grad():
        f0 = F_(pb['phi']).item()
        step = 1e-2 / hg.norm(grad).item()
        down = F_({k: v - step * grad[k] for k, v in pb['phi'].items()})
        up = F_({k: v + step * grad[k] for k, v in pb['phi'].items()})
    assert down.item() < f0 < up.item()


def test_parameters_restored_bit_exactly():
    pb = make_problem(batches=2)
    l1s, traj, theta2_new = trajectory(pb, 2)
    # fp32 copies, as a model's parameters would be
    fp32 = [{k: v.float() for k, v in d.items()} for d in traj]
    t2, t2n = ({k: v.float() for k, v in d.items()}
               for d in (pb['theta2'], theta2_new))
    phi = {k: v.float() for k, v in pb['phi'].items()}
    snapshot = [{k: v.clone() for k, v in d.items()}
                for d in fp32 + [t2, t2n, phi]]
    precision = torch.get_float32_matmul_precision()

    def as32(f):
        return lambda a, b: f({k: v.double() for k, v in a.items()},
                              {k: v.double() for k, v in b.items()}).float()
    res = hg.hypergradient([as32(f) for f in l1s], as32(pb['l2']),
                           as32(pb['l3']), fp32[:-1], fp32[-1], t2, t2n, phi,
                           XI1, XI2, mode='finite_difference',
                           head_term='finite_difference')
    assert all(torch.isfinite(v).all() for v in res.grad.values())
    for before, after in zip(snapshot, fp32 + [t2, t2n, phi]):
        for k in before:
            assert torch.equal(before[k], after[k])
            assert not after[k].requires_grad
    assert torch.get_float32_matmul_precision() == precision


def test_strict_fp32_turns_autocast_off():
    with torch.autocast('cpu', dtype=torch.bfloat16):
        a = torch.randn(4, 4)
        assert (a @ a).dtype == torch.bfloat16
        with hg.strict_fp32():
            assert (a @ a).dtype == torch.float32
            assert torch.get_float32_matmul_precision() == 'highest'


def test_same_rng_across_plus_minus_and_dropout_negative():
    """With dropout the ± evaluations must draw the same masks: with the
    same RNG state FD is the exact derivative of the fixed-mask loss; with
    independent masks it is garbage (35-577x error measured at ViT-B)."""
    pb = make_problem(dropout=0.5)
    l1s, traj, theta2_new = trajectory(pb, 1)
    args = (l1s, pb['l2'], pb['l3'], traj[:-1], traj[-1], pb['theta2'],
            theta2_new, pb['phi'], XI1, XI2)
    # reference: the exact products with the dropout mask the FD run draws
    state = torch.get_rng_state()
    fd = hg.hypergradient(*args, mode='finite_difference').grad
    torch.set_rng_state(state)
    exact = hg.hypergradient(*args, mode='exact').grad
    assert_close(fd, exact, rtol=1e-4, atol=1e-8)
    bad = hg.hypergradient(*args, mode='finite_difference',
                           same_rng=False).grad
    assert rel_err(bad, exact) > 1.0
    with pytest.raises(AssertionError):
        assert_close(bad, exact, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize('mode', ['exact', 'finite_difference'])
def test_two_workers_with_reduce_equal_one_on_the_whole_batch(mode):
    """`reduce` (the DDP all-reduce) makes two workers on half batches equal
    one worker on the concatenated batch (threads stand in for processes)."""
    K = 2
    pb = make_problem(batches=K, seed=3)
    Xtr, ytr, Xva, yva = pb['data']

    def cls_loss(X, y):
        def loss(t1, t2):
            f = pb['features'](t1, X)
            return F.cross_entropy(f @ t2['Wh'] + t2['bh'], y)
        return loss
    whole = run_hg(pb, K, mode)
    l1s, traj, theta2_new = trajectory(pb, K)
    # level 1 of the tiny problem is already a per-worker loss (each worker
    # keeps the whole MAE batch); levels 2 and 3 are split in halves
    barrier = threading.Barrier(2)
    slots, results = [None, None], [None, None]

    def make_reduce(rank):
        def reduce(tensors):
            slots[rank] = [t.clone() for t in tensors]
            barrier.wait()
            for i, t in enumerate(tensors):
                t.copy_((slots[0][i] + slots[1][i]) / 2)
            barrier.wait()
        return reduce

    def worker(rank):
        half = slice(4 * rank, 4 * rank + 4)
        results[rank] = hg.hypergradient(
            l1s, cls_loss(Xtr[half], ytr[half]),
            cls_loss(Xva[half], yva[half]), traj[:-1], traj[-1],
            pb['theta2'], theta2_new, pb['phi'], XI1, XI2, mode=mode,
            reduce=make_reduce(rank)).grad
    threads = [threading.Thread(target=worker, args=(r, )) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert_close(r, whole, rtol=1e-9 if mode == 'exact' else 1e-6,
                     atol=1e-12)


def test_bad_options():
    with pytest.raises(ValueError, match='mode'):
        hg.check_options('fd', 'exact', 1, 1e-2)
    with pytest.raises(ValueError, match='unroll'):
        hg.check_options('exact', 'all', 1, 1e-2)
    with pytest.raises(ValueError, match='unroll_steps'):
        hg.check_options('exact', 'exact', 0, 1e-2)
    with pytest.raises(ValueError, match='fd_radius'):
        hg.check_options('exact', 'exact', 1, 0)
