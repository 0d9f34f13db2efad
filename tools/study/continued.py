"""Continued pretraining in a study (``--continue LABEL=BASE@N``) and the
training logs' ``mask_specificity`` (docs/study.md).

A continued config starts from BASE's checkpoint after N of BASE's own
units (iterations or epochs), same seed, as MLO-MAE's paper does from an
MAE checkpoint (§4.4); its budget is what BASE's first N units left:

    remaining = budget - spent,  spent = iterations(N) x ratio(BASE)
    (in plain-MAE steps; / BASE's iterations per epoch for --epochs)

Its first sitting loads the checkpoint (``load_from``, from iteration 0:
weights only, keys it lacks such as a masking network keep their init);
a later sitting resumes from the run's own newest checkpoint.
"""
import glob
import json
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

_SPEC = re.compile(r'^([A-Za-z0-9_.-]+)=([A-Za-z0-9_.-]+)@(\d+)$')


def parse_continue(items: Sequence[str], labels: Sequence[str]
                   ) -> Dict[str, Tuple[str, int]]:
    """``{LABEL: (BASE, N)}`` from ``LABEL=BASE@N`` items; BASE must come
    before LABEL among the study's configs and not continue itself."""
    out: Dict[str, Tuple[str, int]] = {}
    for item in items or ():
        m = _SPEC.match(item)
        if not m:
            raise ValueError(f'--continue {item!r}: expected LABEL=BASE@N '
                             '(N: a checkpoint of BASE, in its own unit)')
        label, base, n = m.group(1), m.group(2), int(m.group(3))
        for name in (label, base):
            if name not in labels:
                raise ValueError(f'--continue {item!r}: {name!r} is not a '
                                 f'config of the study ({list(labels)})')
        if labels.index(base) >= labels.index(label):
            raise ValueError(f'--continue {item!r}: list {base!r} before '
                             f'{label!r} (its checkpoint must exist first)')
        if label in out:
            raise ValueError(f'--continue: {label!r} is given twice')
        if n < 1:
            raise ValueError(f'--continue {item!r}: N must be positive')
        out[label] = (base, n)
    chained = sorted(set(out) & {b for b, _ in out.values()})
    if chained:
        raise ValueError(f'--continue: {chained} both continue and are '
                         'continued from; chains are not supported')
    return out


def kept_checkpoints(length: int, interval: int, keep: int = 2) -> List[int]:
    """The checkpoints a run of ``length`` units keeps: every ``interval``
    and the last, of which the newest ``keep`` (CheckpointHook's
    ``max_keep_ckpts``)."""
    saved = list(range(interval, length + 1, interval))
    if not saved or saved[-1] != length:
        saved.append(length)
    return saved[-keep:]


def spent_budget(base_length: Dict, n: int, budget_unit: str) -> Dict:
    """What BASE's first ``n`` units cost: its iterations, plain-MAE steps
    and the same in the study's budget unit."""
    iterations = n if base_length['unit'] == 'iters' else \
        n * base_length['iters_per_epoch']
    steps = iterations * base_length['ratio']
    budget = steps if budget_unit == 'iters' else \
        steps / base_length['iters_per_epoch']
    return dict(iterations=iterations, mae_steps=steps, budget=budget)


def logged_mean(pretrain_dir: str, key: str, last_fraction: float = 0.1,
                final_iter: Optional[int] = None) -> Optional[float]:
    """Mean of ``key`` over the last ``last_fraction`` of a run's logged
    iterations (``<pretrain_dir>/*/vis_data/scalars.json`` of every
    sitting; a resumed sitting's entries replace the earlier ones of the
    same iteration).  None when the run did not log ``key`` then."""
    values: Dict[int, float] = {}
    for path in sorted(glob.glob(osp.join(pretrain_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                if key in rec and 'iter' in rec:
                    values[int(rec['iter'])] = float(rec[key])
    if not values:
        return None
    end = final_iter or max(values)
    start = end * (1 - last_fraction)
    window = [v for it, v in values.items() if start < it <= end]
    return sum(window) / len(window) if window else None
