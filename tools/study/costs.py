"""Cost ratios of the study's configs (``--cost CONFIG=RATIO``,
``--cost-file JSON``): one training iteration of a config costs RATIO plain
MAE steps, and its budget is divided by RATIO."""
import json
import math
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple


def _config_keys(path: str) -> Tuple[str, ...]:
    base = osp.basename(path)
    return (path, osp.abspath(path), base, osp.splitext(base)[0])


def match_costs(configs: Sequence[str], costs: Dict[str, float],
                labels: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """``{config path: ratio}``; a cost key names a config by its path,
    file name, file stem or label.  Every config needs exactly one ratio."""
    out, used = {}, set()
    labels = labels or [None] * len(configs)
    for cfg, label in zip(configs, labels):
        names = _config_keys(cfg) + ((label, ) if label else ())
        keys = [k for k in costs if k in names]
        if not keys:
            raise ValueError(
                f'no cost ratio for {cfg}: give --cost '
                f'{osp.splitext(osp.basename(cfg))[0]}=RATIO (ratios given: '
                f'{sorted(costs)})')
        if len({costs[k] for k in keys}) > 1:
            raise ValueError(f'{cfg} has several cost ratios: '
                             f'{ {k: costs[k] for k in keys} }')
        out[cfg] = costs[keys[0]]
        used.update(keys)
    unused = sorted(set(costs) - used)
    if unused:
        raise ValueError(f'cost ratios for configs not in the study: {unused}')
    return out


def parse_costs(items: Sequence[str] = (), files: Sequence[str] = ()
                ) -> Dict[str, float]:
    """``--cost CONFIG=RATIO`` and ``--cost-file FILE.json``.

    A JSON file is ``{"CONFIG": RATIO, ...}`` (optionally under a ``costs``,
    ``ratios`` or ``ratios_vs_first`` key: the benchmark CLI's JSON, whose
    first config is plain MAE) or a list of ``{"config": ..., "ratio": ...}``
    records (``cost`` / ``cost_ratio`` also read as the ratio).
    """
    costs = {}

    def add(key, value, where):
        try:
            ratio = float(value)
        except (TypeError, ValueError):
            raise ValueError(f'{where}: cost ratio of {key!r} is {value!r}, '
                             'not a number') from None
        if not ratio > 0 or math.isinf(ratio):
            raise ValueError(f'{where}: cost ratio of {key!r} must be a '
                             f'positive number, got {value!r}')
        if key in costs and costs[key] != ratio:
            raise ValueError(f'{where}: {key!r} has two cost ratios, '
                             f'{costs[key]} and {ratio}')
        costs[key] = ratio

    for path in files:
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict):
            data = next((data[k] for k in ('costs', 'ratios',
                                           'ratios_vs_first') if k in data),
                        data)
        if isinstance(data, dict):
            for k, v in data.items():
                add(k, v, path)
        elif isinstance(data, list):
            for rec in data:
                value = next((rec[k] for k in ('ratio', 'cost', 'cost_ratio')
                              if isinstance(rec, dict) and k in rec), None)
                if not isinstance(rec, dict) or 'config' not in rec or \
                        value is None:
                    raise ValueError(
                        f'{path}: record {rec!r} has no "config" and "ratio"')
                add(rec['config'], value, path)
        else:
            raise ValueError(f'{path}: expected a JSON object or list')
    for item in items:
        if '=' not in item:
            raise ValueError(f'--cost {item!r}: expected CONFIG=RATIO')
        key, value = item.rsplit('=', 1)
        add(key, value, '--cost')
    return costs
