"""Finished runs of an earlier study, taken from its ``study.json``
(``--reuse JSON``, docs/study.md).

A study spread over machines (checkpoints do not travel, the JSON does)
keeps each finished run's record. A planned run takes an earlier record
instead of running again when the record is complete (pretraining time
and every metric of this study) and describes the same run:

- the same label, seed and config file name, the same length (unit,
  length, iterations, cost ratio, MAE-step eq.), the same continued-from
  base and checkpoint (``--continue``);
- and the earlier study measured it the same way: probes, linear-probe
  recipe (file name), epochs and batch size, few-shot shots (this study's
  shots among them), draws and feature, data parts (names, image counts,
  classes; not the root folder, which differs between machines).

A JSON that measured differently is refused with the setting that differs;
a run of another length or seed is simply not in it.
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

# settings that must agree for any record of a JSON to be reused
_SAME = ('probe_epochs', 'probe_batch_size', 'fewshot_seeds',
         'fewshot_feature', 'classes')
_SAME_DATA = ('train_split', 'probe_split', 'val_split', 'num_train',
              'num_probe', 'num_val')
_LENGTH = ('unit', 'length', 'iterations', 'ratio', 'mae_steps')


def _differences(old: Dict, new: Dict) -> List[str]:
    """The measuring settings in which an earlier study differs."""
    diff = []
    for key in _SAME:
        if old.get(key) != new.get(key):
            diff.append(f'{key}: {old.get(key)!r} there, {new.get(key)!r} '
                        'here')
    for key in _SAME_DATA:
        a, b = old.get('data', {}).get(key), new['data'].get(key)
        if a != b:
            diff.append(f'data {key}: {a!r} there, {b!r} here')
    if not set(new['probes']) <= set(old.get('probes', ())):
        diff.append(f'probes: {old.get("probes")} there, {new["probes"]} '
                    'here')
    if 'linear' in new['probes']:
        a = osp.basename(old.get('probe_config') or '')
        b = osp.basename(new['probe_config'] or '')
        if a != b:
            diff.append(f'probe_config: {a} there, {b} here')
    if 'fewshot' in new['probes'] and not set(new['shots']) <= set(
            old.get('shots', ())):
        diff.append(f'shots: {old.get("shots")} there, {new["shots"]} here')
    return diff


def load_reusable(paths: Sequence[str], settings: Dict) -> List[Dict]:
    """Every run record of the JSONs at ``paths``; refuses a JSON whose
    measuring settings differ from ``settings`` (this study's)."""
    records = []
    for path in paths or ():
        if not osp.isfile(path):
            raise FileNotFoundError(f'--reuse {path} does not exist')
        with open(path) as f:
            old = json.load(f)
        if 'runs' not in old or 'settings' not in old:
            raise ValueError(f'--reuse {path}: not a study.json (no '
                             '"runs" / "settings")')
        diff = _differences(old['settings'], settings)
        if diff:
            raise ValueError(f'--reuse {path} measured differently: ' +
                             '; '.join(diff))
        records += [dict(r, reused_from=osp.abspath(path))
                    for r in old['runs']]
    return records


def _same_run(rec: Dict, run: Dict) -> bool:
    if (rec.get('label'), rec.get('seed')) != (run['label'], run['seed']):
        return False
    if osp.basename(rec.get('config', '')) != osp.basename(run['config']):
        return False
    if any(rec.get(k) != run['length'][k] for k in _LENGTH):
        return False
    old, new = rec.get('continued'), run['length'].get('continued')
    if (old is None) != (new is None):
        return False
    if new is not None and any(old.get(k) != new[k] for k in (
            'label', 'at', 'unit')):
        return False
    return True


def complete(rec: Dict, metric_names: Sequence[str]) -> bool:
    """A record with its pretraining time and every metric."""
    if rec.get('pretrain_seconds') is None and rec.get('label') != \
            'random-init':
        return False
    return all(rec.get('metrics', {}).get(n) is not None
               for n in metric_names)


def find_reusable(records: Sequence[Dict], run: Dict,
                  metric_names: Sequence[str]) -> Optional[Dict]:
    """The complete earlier record of ``run``, if any (the last one)."""
    found = None
    for rec in records:
        if _same_run(rec, run) and complete(rec, metric_names):
            found = rec
    return found
