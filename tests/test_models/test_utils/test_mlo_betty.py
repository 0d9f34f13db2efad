"""Differential test: our hypergradient against betty itself.

The official MLO-MAE code (Alexiland/MLO-MAE, main_cifar10.py l. 330-497)
runs its three levels on betty 0.2.1 (leopard-ai/betty): three
``ImplicitProblem``s, ``type='darts'`` everywhere, the dependencies
``u2l = {mask: [pretrain]}``, ``l2u = {pretrain: [finetune, mask],
finetune: [mask]}`` (l. 485-488), pretraining unrolled twice (l. 169).
Here the same engine runs a tiny float64 problem of that structure, and the
masking network's gradient betty computes at its one masker step is
compared with ``hypergrad.hypergradient`` at the points betty uses (the
current θ1 after both MAE steps, the current θ2 after the head's step, the
last MAE batch; ξ1 = ξ2 = 1).  betty's ``darts`` products are central
differences with radius ``darts_alpha``; at 1e-5 in float64 their error is
~1e-9, so the two agree to 1e-7.

betty-ml 0.2.1 declares Python < 3.11 but is pure Python and imports with
torch 2.x on 3.11 (its wandb / tensorboard loggers are imported lazily);
``make install-full`` installs it test-only with ``--no-deps
--ignore-requires-python``.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlmask_mm.models.utils import hypergrad as hg

pytestmark = pytest.mark.needs_betty

B, L, P, H, D0, C = 4, 6, 5, 7, 3, 3


class MAE(nn.Module):
    """θ1: a tanh encoder and a linear decoder on P-dim patches."""

    def __init__(self, g):
        super().__init__()
        self.We = nn.Parameter(0.5 * torch.randn(P, H, generator=g))
        self.be = nn.Parameter(0.1 * torch.randn(H, generator=g))
        self.Wd = nn.Parameter(0.5 * torch.randn(H, P, generator=g))

    def features(self, X):
        return torch.tanh(X @ self.We + self.be).mean(1)

    def per_patch_loss(self, X, m):
        h = torch.tanh(((1 - m)[..., None] * X) @ self.We + self.be)
        pred = torch.tanh(h + h.mean(1, keepdim=True)) @ self.Wd
        return ((pred - X)**2).mean(-1)


class Masker(nn.Module):
    """φ: p = sigmoid(z Wm + bm) from a fixed per-patch input z."""

    def __init__(self, g):
        super().__init__()
        self.Wm = nn.Parameter(0.7 * torch.randn(D0, generator=g))
        self.bm = nn.Parameter(0.1 * torch.randn(1, generator=g))

    def forward(self, z):
        return torch.sigmoid(z @ self.Wm + self.bm)


class Head(nn.Module):
    """θ2: a linear classifier."""

    def __init__(self, g):
        super().__init__()
        self.Wh = nn.Parameter(0.5 * torch.randn(H, C, generator=g))
        self.bh = nn.Parameter(0.1 * torch.randn(C, generator=g))

    def forward(self, f):
        return f @ self.Wh + self.bh


def l1_value(mae_params, phi, X, z, m):
    """L1 = Σ m p ℓ / Σ m (main_cifar10.py l. 347-354)."""
    probs = torch.sigmoid(z @ phi['Wm'] + phi['bm'])
    h = torch.tanh(((1 - m)[..., None] * X) @ mae_params['We'] +
                   mae_params['be'])
    pred = torch.tanh(h + h.mean(1, keepdim=True)) @ mae_params['Wd']
    ell = ((pred - X)**2).mean(-1)
    return (m * probs * ell).sum() / m.sum()


def cls_value(t1, t2, X, y):
    f = torch.tanh(X @ t1['We'] + t1['be']).mean(1)
    return F.cross_entropy(f @ t2['Wh'] + t2['bh'], y)


def make_data(g):
    def mae_batch():
        X = torch.randn(B, L, P, generator=g)
        z = torch.randn(B, L, D0, generator=g)
        ranks = torch.rand(B, L, generator=g).argsort(1).argsort(1)
        return X, z, (ranks >= 2).double()  # 4 of 6 patches masked

    def labelled(n=8):
        return (torch.randn(n, L, P, generator=g),
                torch.randint(0, C, (n, ), generator=g))
    return [mae_batch(), mae_batch()], [labelled()], [labelled()]


def run_betty(darts_alpha):
    """One masker step of betty's engine; returns what it saw and did."""
    from betty.configs import Config, EngineConfig
    from betty.engine import Engine
    from betty.problems import ImplicitProblem

    torch.set_default_dtype(torch.float64)
    try:
        g = torch.Generator().manual_seed(0)
        mae, masker, head = MAE(g), Masker(g), Head(g)
        mae_data, train_data, val_data = make_data(g)
    finally:
        torch.set_default_dtype(torch.float32)
    seen = {}

    class Pretraining(ImplicitProblem):
        def training_step(self, batch):
            X, z, m = batch
            probs = self.mask(z)  # the masking network, as l. 338
            ell = self.module.per_patch_loss(X, m)
            return (m * probs * ell).sum() / m.sum()

    class Finetuning(ImplicitProblem):
        def training_step(self, batch):
            X, y = batch
            return F.cross_entropy(
                self.forward(self.pretrain.module.features(X)), y)

    class Masking(ImplicitProblem):
        def training_step(self, batch):
            X, y = batch
            seen['theta1'] = {n: p.detach().clone() for n, p in
                              self.pretrain.module.named_parameters()}
            seen['theta2'] = {n: p.detach().clone() for n, p in
                              self.finetune.module.named_parameters()}
            seen['phi'] = {n: p.detach().clone()
                           for n, p in self.module.named_parameters()}
            seen['mae_batch'] = self.pretrain.cur_batch
            seen['train_batch'] = self.finetune.cur_batch
            seen['val_batch'] = batch
            return F.cross_entropy(
                self.finetune(self.pretrain.module.features(X)), y)

        def grad_callback(self):
            seen['grad'] = {n: p.grad.detach().clone()
                            for n, p in self.module.named_parameters()}
            seen['paths'] = [[q.name for q in path] for path in self.paths]

    def config(unroll):
        return Config(type='darts', unroll_steps=unroll, retain_graph=True,
                      allow_unused=True, darts_alpha=darts_alpha,
                      log_step=0)

    sgd = torch.optim.SGD
    pretrain = Pretraining(name='pretrain', module=mae,
                           optimizer=sgd(mae.parameters(), lr=0.1),
                           train_data_loader=mae_data, config=config(2))
    finetune = Finetuning(name='finetune', module=head,
                          optimizer=sgd(head.parameters(), lr=0.5),
                          train_data_loader=train_data, config=config(1))
    mask = Masking(name='mask', module=masker,
                   optimizer=sgd(masker.parameters(), lr=0.01),
                   train_data_loader=val_data, config=config(1))
    engine = Engine(
        config=EngineConfig(train_iters=2, valid_step=10**6),
        problems=[pretrain, finetune, mask],
        dependencies=dict(u2l={mask: [pretrain]},
                          l2u={pretrain: [finetune, mask],
                               finetune: [mask]}))
    engine.run()
    return {k: ({n: t.cpu() for n, t in v.items()} if isinstance(v, dict)
                else v) for k, v in seen.items()}


def ours(seen, **kwargs):
    X, z, m = (t.cpu() for t in seen['mae_batch'])
    Xtr, ytr = (t.cpu() for t in seen['train_batch'])
    Xva, yva = (t.cpu() for t in seen['val_batch'])
    t1, t2 = seen['theta1'], seen['theta2']
    return hg.hypergradient(
        [lambda a, p: l1_value(a, p, X, z, m)],
        lambda a, b: cls_value(a, b, Xtr, ytr),
        lambda a, b: cls_value(a, b, Xva, yva),
        [t1], t1, t2, t2, seen['phi'], 1.0, 1.0, unroll='last',
        **kwargs)


@pytest.fixture(scope='module')
def betty_fine():
    pytest.importorskip('betty', reason='betty-ml 0.2.1 is not installed')
    return run_betty(darts_alpha=1e-5)


def test_betty_engine_takes_the_official_paths(betty_fine):
    """The two hypergradient paths of the official dependency graph: the
    direct one through the MAE and the one through the head."""
    assert sorted(betty_fine['paths']) == [
        ['mask', 'finetune', 'pretrain', 'mask'],
        ['mask', 'pretrain', 'mask']]
    # betty saw the last of the two MAE batches (darts differentiates the
    # last unrolled step at the current θ1)
    assert betty_fine['mae_batch'][0].dtype == torch.float64


@pytest.mark.parametrize('mode,head_term', [
    ('exact', 'double_backward'),
    ('finite_difference', 'finite_difference')])
def test_hypergradient_equals_bettys_darts(betty_fine, mode, head_term):
    """ξ1 = ξ2 = 1 at betty's points equals betty's darts gradient of the
    masking network to 1e-7 (float64, darts_alpha 1e-5; our finite
    differences at the same radius)."""
    res = ours(betty_fine, mode=mode, head_term=head_term, fd_radius=1e-5)
    theirs = betty_fine['grad']
    assert hg.norm(theirs) > 1e-3  # a real signal
    for k in theirs:
        torch.testing.assert_close(res.grad[k], theirs[k], rtol=1e-7,
                                   atol=1e-10)
    # both paths carry weight here (a dropped path would be seen)
    assert 0.05 < res.head_share().item() < 20


def test_default_radius_agrees_to_the_truncation_error():
    """At betty's default darts_alpha = 0.01 (the official runs) betty and
    our exact products differ only by the central differences' O(r²)
    truncation."""
    pytest.importorskip('betty', reason='betty-ml 0.2.1 is not installed')
    seen = run_betty(darts_alpha=1e-2)
    exact = ours(seen, mode='exact').grad
    err = hg.norm({k: seen['grad'][k] - exact[k] for k in exact})
    assert err < 1e-3 * hg.norm(exact)
