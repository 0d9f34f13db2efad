"""Few-shot linear probing on cached frozen features.

CL-MAE (Madan et al. 2024), supplementary Table 1 / Fig. 4: for n samples
per class and seed s, draw n labelled training images per class, fit a linear
classifier on their frozen features, report top-1 / top-5 accuracy on the
whole test split, mean ± std over the seeds.

The classifier is multinomial logistic regression fitted by full-batch
L-BFGS (float64) on

    min_{W,b}  1/N Σ_i CE(W f_i + b, y_i) + λ/2 ‖W‖²_F

with f_i the (by default L2-normalised) features.  The problem is convex, so
the fit depends on the sampled images only, not on an initialisation.
"""
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

NORMALIZATIONS = ('l2', 'none')


def class_counts(labels: Sequence[int], num_classes: int) -> List[int]:
    return np.bincount(np.asarray(labels, dtype=np.int64),
                       minlength=num_classes).tolist()


def check_shots(labels: Sequence[int], classes: Sequence[str], shots: int,
                split: str = 'training split') -> None:
    """Raise naming the first class with fewer than ``shots`` images."""
    if shots < 1:
        raise ValueError(f'shots={shots}: the number of samples per class '
                         'must be at least 1')
    for name, count in zip(classes, class_counts(labels, len(classes))):
        if count < shots:
            raise ValueError(
                f'class {name!r} has {count} image(s) in the {split}, fewer '
                f'than shots={shots}: every class needs at least {shots}')


def sample_few_shot(labels: Sequence[int], classes: Sequence[str],
                    shots: int, seed: int) -> np.ndarray:
    """Indices of ``shots`` images of every class, drawn without replacement.

    One ``numpy.random.default_rng(seed)`` draws the classes in label order,
    so (labels, shots, seed) always give the same indices; sorted per class.
    """
    labels = np.asarray(labels, dtype=np.int64)
    check_shots(labels, classes, shots)
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(len(classes)):
        members = np.flatnonzero(labels == c)
        picked.append(np.sort(rng.choice(members, size=shots,
                                         replace=False)))
    return np.concatenate(picked)


def normalize_features(features: torch.Tensor, mode: str) -> torch.Tensor:
    """``'l2'``: f / ‖f‖ per image; ``'none'``: unchanged."""
    if mode == 'l2':
        return F.normalize(features.float(), dim=-1)
    if mode == 'none':
        return features.float()
    raise ValueError(f'normalize={mode!r}: choose one of {NORMALIZATIONS}')


def train_linear_classifier(features: torch.Tensor, labels: torch.Tensor,
                            num_classes: int, weight_decay: float = 1e-4,
                            max_iter: int = 500) -> torch.nn.Linear:
    """Fit softmax regression (module doc) by full-batch L-BFGS."""
    if weight_decay < 0:
        raise ValueError(f'weight_decay={weight_decay} must be >= 0')
    x = features.detach().double()
    y = torch.as_tensor(labels, dtype=torch.long)
    D = x.shape[1]
    W = torch.zeros(D, num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [W, b], lr=1, max_iter=max_iter, history_size=20,
        tolerance_grad=1e-9, tolerance_change=1e-12,
        line_search_fn='strong_wolfe')

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ W + b, y) + \
            0.5 * weight_decay * W.pow(2).sum()
        loss.backward()
        return loss

    # a few hundred small sequential steps: one thread avoids the thread
    # synchronisation that dominates such tiny ops on a loaded CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            optimizer.step(closure)
    finally:
        torch.set_num_threads(threads)
    linear = torch.nn.Linear(D, num_classes)
    with torch.no_grad():
        linear.weight.copy_(W.detach().t())
        linear.bias.copy_(b.detach())
    return linear


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor,
                  topk: Sequence[int] = (1, 5)) -> Dict[int, float]:
    """Percentage of images whose label is among the k highest logits.

    A k not smaller than the number of classes would always count 100 %, so
    it gives ``nan`` (reported as not applicable).  Ties: ``torch.topk``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    num_classes = logits.shape[1]
    out = {}
    for k in topk:
        if k >= num_classes and k > 1:
            out[k] = math.nan
            continue
        top = logits.topk(k, dim=1).indices
        hit = (top == labels[:, None]).any(dim=1)
        out[k] = 100.0 * hit.double().mean().item()
    return out


def few_shot_accuracies(train_features: torch.Tensor, train_labels,
                        test_features: torch.Tensor, test_labels,
                        classes: Sequence[str], shots: int,
                        seeds: Sequence[int], normalize: str = 'l2',
                        weight_decay: float = 1e-4, max_iter: int = 500
                        ) -> List[Tuple[float, float]]:
    """``[(acc@1, acc@5) per seed]`` of the n-shot probe on the test split."""
    train_labels = torch.as_tensor(train_labels, dtype=torch.long)
    test_labels = torch.as_tensor(test_labels, dtype=torch.long)
    f_train = normalize_features(train_features, normalize)
    f_test = normalize_features(test_features, normalize)
    results = []
    for seed in seeds:
        idx = torch.from_numpy(
            sample_few_shot(train_labels.numpy(), classes, shots, seed))
        linear = train_linear_classifier(
            f_train[idx], train_labels[idx], len(classes), weight_decay,
            max_iter)
        with torch.no_grad():
            logits = linear(f_test)
        acc = topk_accuracy(logits, test_labels, (1, 5))
        results.append((acc[1], acc[5]))
    return results


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.all(np.isnan(v)):
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0
