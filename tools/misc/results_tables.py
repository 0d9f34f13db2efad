"""Results tables from the study JSONs (docs/results.md, config READMEs,
metafiles).

    python tools/misc/results_tables.py --write   # rewrite the tables
    python tools/misc/results_tables.py --check   # exit 1 if one is stale
    python tools/misc/results_tables.py           # print every table

Reads the JSONs of ``tools/misc/study.py`` listed in ``STUDY_JSONS`` (one
line per file, with the setting it measured) and renders, per setting, the
rows ``summary`` holds: mean ± sample std (ddof 1) over the seeds, from
``values`` in seed order.  A label found in several JSONs of one setting
comes from the JSON with the most seeds for it (the first listed on a tie).

Markdown tables sit between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` in the files of ``MARKDOWN_BLOCKS``; the metafiles
get ``Results`` (and a ``Study`` line in ``Metadata``) for every config a
study ran.  ``--root DIR`` runs on another checkout (the tests' copies).
"""
import argparse
import json
import math
import os.path as osp
import re
import sys

import yaml

#: study JSON (relative to the root) -> setting it measured; a new JSON is
#: one line here
STUDY_JSONS = {
    'docs/study_cifar10_5k.json': 'compute-5k',
    'docs/study_cifar10_5k_seed2.json': 'compute-5k',
    'docs/study_cifar10_5k_epochs.json': 'epochs-5k',
    'docs/study_cifar10_5k_epochs_cl-n2.json': 'epochs-5k',
    'docs/study_cifar10_cpu.json': 'compute-1k',
}

#: setting -> title, machine (not in the JSONs) and primary metric
SETTINGS = {
    'compute-5k': dict(
        title='equal compute, 5,000 MAE steps',
        machine='the project\'s 2-core CPU, no GPU',
        primary='fewshot_500shot_top1'),
    'epochs-5k': dict(
        title='equal epochs, 7.1 epochs (5,000 iterations of batch 64)',
        machine='the project\'s 2-core CPU, no GPU',
        primary='fewshot_500shot_top1'),
    'compute-1k': dict(
        title='equal compute, 1,000 MAE steps',
        machine='the project\'s 2-core CPU, no GPU',
        primary=None),
}

#: labels that are no pretraining of their config (kept out of metafiles)
UNTRAINED = {'random-init'}

#: config folders whose README holds a ``configs-<folder>`` block
METHOD_FOLDERS = ('mae', 'mlo_mae', 'sg_mae', 'cl_mae')

BLOCK_RE = re.compile(r'(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)'
                      r'(<!-- /results:(?P=name) -->)', re.S)


def _markdown_blocks():
    """File -> block names it must hold."""
    blocks = {'docs/results.md': ['headline', 'vs-mae'] + list(SETTINGS)
              + ['masks']}
    for folder in METHOD_FOLDERS:
        blocks[f'configs/{folder}/README.md'] = [f'configs-{folder}']
    blocks['configs/benchmarks/README.md'] = ['probes']
    return blocks


MARKDOWN_BLOCKS = _markdown_blocks()


# --------------------------------------------------------------- the data
def mean_std(values):
    """Mean and sample standard deviation (ddof 1; None for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean)**2 for v in values) / (n - 1))


def load_studies(root):
    """Setting -> ordered {label: row}; a row is the JSON's summary entry
    plus ``json`` (its file), ``date``, ``settings`` and ``runs`` (its
    per-run records)."""
    studies = {name: {} for name in SETTINGS}
    budgets = {}
    for path, setting in STUDY_JSONS.items():
        with open(osp.join(root, path)) as f:
            study = json.load(f)
        budget = study['settings']['budget']
        key = (budget['unit'], budget['value'], budget.get('cost_given'))
        if budgets.setdefault(setting, key) != key:
            raise ValueError(f'{path}: budget {key} is not that of the '
                             f'other JSONs of {setting} ({budgets[setting]})')
        for entry in study['summary']:
            row = dict(entry, json=path, date=study['date'],
                       settings=study['settings'],
                       runs=[r for r in study['runs']
                             if r['label'] == entry['label']])
            old = studies[setting].get(entry['label'])
            if old is None or len(entry['seeds']) > len(old['seeds']):
                studies[setting][entry['label']] = row
    return studies


def _metric_values(row, key):
    if key == 'mask_specificity':
        stat = row.get('mask_specificity')
    else:
        stat = row['metrics'].get(key)
    if stat is None or any(v is None for v in stat['values']):
        return None
    return stat['values']


def _cell(row, key, digits=1):
    values = _metric_values(row, key)
    if values is None:
        return '–'
    mean, std = mean_std(values)
    if std is None:
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {std:.{digits}f}'


def _shots(row):
    found = (re.fullmatch(r'fewshot_(\d+)shot_top1', k) for k in row['metrics'])
    return sorted(int(m.group(1)) for m in found if m)


def _feature(row):
    return row['settings'].get('fewshot_feature', 'cls_token').replace(
        '_', '-').replace('cls-token', 'class token')


def _length(row):
    text = f"{row['length']} {row['unit']}"
    if row.get('continued'):
        c = row['continued']
        text += f" after {c['label']} {c['at']} {c['unit']}"
    return text


def _config_link(config, from_dir):
    rel = osp.relpath(config, from_dir)
    return f'[{osp.basename(config)[:-3]}]({rel})'


def _seeds(row):
    return ', '.join(str(s) for s in row['seeds'])


def _metric_columns(rows):
    """(metric key, header) in table order: the largest few-shot count, the
    linear probe, the other few-shot counts."""
    shots = sorted({s for r in rows for s in _shots(r)})
    columns = []
    if shots:
        columns.append((f'fewshot_{shots[-1]}shot_top1',
                        f'{shots[-1]}/class'))
    columns += [('linear_top1', 'linear top-1'), ('linear_top5', 'linear top-5')]
    columns += [(f'fewshot_{s}shot_top1', f'{s}/class') for s in shots[:-1]]
    return columns


# ------------------------------------------------------------- renderers
def describe_setting(studies, setting, from_dir='docs'):
    """The setting in two lines: data, budget, probes, seeds, dates."""
    rows = list(studies[setting].values())
    first = rows[0]['settings']
    data, budget = first['data'], first['budget']
    if budget.get('cost_given'):
        rule = (f"equal compute: {budget['value']:g} {budget['unit']} "
                'divided by each config\'s measured cost ratio in MAE steps')
    else:
        rule = f"equal epochs: {budget['value']:g} {budget['unit']} each"
    shots = first['shots']
    primary = SETTINGS[setting]['primary']
    seeds = sorted({s for r in rows for s in r['seeds']})
    jsons = sorted({(r['json'], r['date']) for r in rows})
    return (
        f"CIFAR-10, pretrained on `{data['train_split']}` "
        f"({data['num_train']:,} images), probes fitted on "
        f"`{data['probe_split']}` ({data['num_probe']:,} of the train "
        f"images), scored on `{data['val_split']}` ({data['num_val']:,} "
        f"held-out images); batch "
        f"{'/'.join(sorted({str(r['batch_size']) for r in rows}))}; {rule}. "
        f"Probes: {_feature(rows[0])} L-BFGS at "
        f"{', '.join(map(str, shots))} images per class "
        f"({first['fewshot_seeds']} draws"
        + ('; the largest is the primary probe' if primary else '')
        + f"), `{osp.basename(first['probe_config'])}` "
        f"({first['probe_epochs']} epochs, class token) for `linear`. "
        f"Seeds {', '.join(map(str, seeds))}; "
        f"{SETTINGS[setting]['machine']}; "
        + ', '.join(f'[{osp.basename(j)}]({osp.relpath(j, from_dir)}) '
                    f'({d})' for j, d in jsons) + '.\n')


def render_setting(studies, setting, from_dir='docs'):
    """One setting's description and table: every label, every metric."""
    rows = list(studies[setting].values())
    columns = _metric_columns(rows)
    head = ['label', 'config', 'seeds', 'length', 'cost ratio',
            'MAE-step eq.', 'mask specificity'] + [h for _, h in columns] + \
        ['JSON']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '|'.join(['---'] * 4 + ['---:'] * (len(head) - 5)
                            + ['---']) + '|']
    for row in rows:
        config = ('(untrained) ' if row['label'] in UNTRAINED else '') + \
            _config_link(row['config'], from_dir)
        cells = [row['label'], config, _seeds(row), _length(row),
                 f"{row['ratio']:g}", f"{row['mae_steps']:.0f}",
                 _cell(row, 'mask_specificity', 2)]
        cells += [_cell(row, key) for key, _ in columns]
        cells.append(f"[{osp.basename(row['json'])}]"
                     f"({osp.relpath(row['json'], from_dir)})")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return (describe_setting(studies, setting, from_dir) + '\n'
            + '\n'.join(lines) + '\n')


def _primary_settings():
    return [s for s, info in SETTINGS.items() if info['primary']]


def render_headline(studies):
    """Primary probe per label and setting (mean ± std, n seeds)."""
    settings = _primary_settings()
    labels = []
    for s in settings:
        labels += [lb for lb in studies[s] if lb not in labels]
    labels.sort(key=lambda lb: lb in UNTRAINED)
    lines = ['| label | ' + ' | '.join(SETTINGS[s]['title'] for s in settings)
             + ' |', '|---|' + '---:|' * len(settings)]
    for label in labels:
        cells = []
        for s in settings:
            row = studies[s].get(label)
            if row is None:
                cells.append('–')
            else:
                cells.append(f"{_cell(row, SETTINGS[s]['primary'])} "
                             f"(n={len(row['seeds'])})")
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def verdict(row, ref, key):
    """Difference of means to the reference and the rule's reading: a
    difference counts only beyond twice the larger sample std (and with
    at least two seeds on each side)."""
    m, s = mean_std(_metric_values(row, key))
    mr, sr = mean_std(_metric_values(ref, key))
    diff = m - mr
    if s is None or sr is None:
        return diff, 'one seed: no reading'
    if abs(diff) <= 2 * max(s, sr):
        return diff, 'level within seed noise'
    return diff, 'above' if diff > 0 else 'below'


def render_vs_mae(studies):
    """Every label against plain MAE of the same setting, primary probe:
    the difference of means and its reading (the values are the
    headline's, not repeated)."""
    lines = ['| setting | label | difference to plain MAE | '
             'reading (beyond 2 x the larger std) |',
             '|---|---|---:|---|']
    for s in _primary_settings():
        key, ref = SETTINGS[s]['primary'], studies[s].get('mae')
        for label, row in studies[s].items():
            if ref is None or label == 'mae':
                continue
            diff, reading = verdict(row, ref, key)
            lines.append(f"| {SETTINGS[s]['title']} | {label} | "
                         f"{diff:+.1f} | {reading} |")
    return '\n'.join(lines) + '\n'


def render_configs(studies, folder):
    """The rows of configs/<folder>/ across the settings (beside plain
    MAE's primary probe of the same setting, but in configs/mae/)."""
    from_dir = f'configs/{folder}'
    with_ref = folder != 'mae'
    head = ['config', 'label', 'setting', 'seeds', 'length',
            'mask specificity', 'primary probe', 'linear top-1'] + \
        (['plain MAE, primary'] if with_ref else []) + ['JSON']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * 5 + '---:|' * (len(head) - 6) + '---|']
    for s, rows in studies.items():
        primary = SETTINGS[s]['primary']
        ref = rows.get('mae')
        for label, row in rows.items():
            if label in UNTRAINED or \
                    osp.dirname(row['config']) != from_dir:
                continue
            cells = [f"`{osp.basename(row['config'])}`", label,
                     SETTINGS[s]['title'], _seeds(row), _length(row),
                     _cell(row, 'mask_specificity', 2),
                     _cell(row, primary) if primary else '–',
                     _cell(row, 'linear_top1')]
            if with_ref:
                cells.append(_cell(ref, primary) if primary and ref else '–')
            cells.append(f"[{osp.basename(row['json'])}]"
                         f"({osp.relpath(row['json'], from_dir)})")
            lines.append('| ' + ' | '.join(cells) + ' |')
    if len(lines) == 2:
        lines.append('| not measured here |' + ' |' * (len(head) - 1))
    return '\n'.join(lines) + '\n'


def render_probes(studies, from_dir='configs/benchmarks'):
    """Which probe config and probes each setting used."""
    lines = ['| setting | linear probe config | epochs | few-shot feature | '
             'shots per class | JSON |', '|---|---|---:|---|---|---|']
    for s, rows in studies.items():
        row = next(iter(rows.values()))
        st = row['settings']
        jsons = sorted({r['json'] for r in rows.values()})
        lines.append(
            f"| {SETTINGS[s]['title']} | "
            f"`{osp.basename(st['probe_config'])}` | "
            f"{st['probe_epochs']} | {_feature(row)} | "
            f"{', '.join(str(n) for n in st['shots'])} | " + ', '.join(
                f'[{osp.basename(j)}]({osp.relpath(j, from_dir)})'
                for j in jsons) + ' |')
    return '\n'.join(lines) + '\n'


#: mask-content columns: (header, key, reference key or None)
MASK_COLUMNS = (('flip same (ref.)', 'flip_same', 'flip_reference'),
                ('shift same (ref.)', 'shift_same', 'shift_reference'),
                ('shuffle same', 'shuffle_same', None),
                ('mean colour same (between images)', 'mean_colour_same',
                 'between_images'),
                ('texture AUC', 'texture_auc', None),
                ('mask specificity', 'mask_specificity', None))


def render_masks(studies):
    """Masks on whole images, per run (tools/analysis_tools mask test)."""
    lines = ['| setting | label | seed | '
             + ' | '.join(h for h, _, _ in MASK_COLUMNS) + ' |',
             '|---|---|---:|' + '---:|' * len(MASK_COLUMNS)]
    seen = []
    for s in _primary_settings():
        for label, row in studies[s].items():
            for run in row['runs']:
                mc = run.get('mask_content')
                if not mc or (label, run['seed'], mc) in seen:
                    continue  # a run shared by two settings: listed once
                seen.append((label, run['seed'], mc))
                cells = [f'{mc[k]:.3f}' + (f' ({mc[ref]:.3f})' if ref else '')
                         for _, k, ref in MASK_COLUMNS]
                lines.append(f"| {SETTINGS[s]['title']} | {label} | "
                             f"{run['seed']} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def render_block(studies, name):
    if name == 'masks':
        return render_masks(studies)
    if name in SETTINGS:
        return render_setting(studies, name)
    if name == 'headline':
        return render_headline(studies)
    if name == 'vs-mae':
        return render_vs_mae(studies)
    if name == 'probes':
        return render_probes(studies)
    if name.startswith('configs-'):
        return render_configs(studies, name[len('configs-'):])
    raise KeyError(f'no table named {name}')


# -------------------------------------------------------------- markdown
def update_markdown(text, studies, names, path):
    """Text with the named blocks rendered; (text, names that changed)."""
    found = [m.group('name') for m in BLOCK_RE.finditer(text)]
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f'{path}: no <!-- results:{missing[0]} --> ... '
                         f'<!-- /results:{missing[0]} --> block')
    changed = []

    def sub(m):
        new = render_block(studies, m.group('name'))
        if new != m.group('body'):
            changed.append(m.group('name'))
        return m.group(1) + new + m.group(4)

    return BLOCK_RE.sub(sub, text), changed


# ------------------------------------------------------------- metafiles
def _metric_name(row, key):
    if key == 'linear_top1':
        return (f"Linear probe top-1 (class token, AdamW "
                f"{row['settings']['probe_epochs']} epochs)")
    n = re.fullmatch(r'fewshot_(\d+)shot_top1', key).group(1)
    return f'Linear probe top-1 ({_feature(row)}, L-BFGS, {n}/class)'


def metafile_results(studies, config):
    """(Results, Study lines) of one config: one result per setting."""
    results, study = [], []
    for s, rows in studies.items():
        for label, row in rows.items():
            if row['config'] != config or label in UNTRAINED:
                continue
            shots = _shots(row)
            keys = ([f'fewshot_{shots[-1]}shot_top1'] if shots else []) + \
                ['linear_top1']
            metrics = {_metric_name(row, k):
                       round(mean_std(_metric_values(row, k))[0], 2)
                       for k in keys if _metric_values(row, k)}
            results.append({
                'Task': 'Linear probe on frozen features; '
                        + SETTINGS[s]['title'],
                'Dataset': 'CIFAR-10',
                'Metrics': metrics})
            data = row['settings']['data']
            study.append(
                f"{SETTINGS[s]['title']}: {_length(row)} on the CIFAR-10 "
                f"train split ({data['num_train']:,} images), seeds "
                f"{_seeds(row)}, mean over seeds; {row['json']}")
    return results, study


def _model_spans(lines):
    """(name, first line, end line) of each ``  - Name:`` entry."""
    models = lines.index('Models:')
    starts = [(i, ln.split(':', 1)[1].strip()) for i, ln in enumerate(lines)
              if i > models and ln.startswith('  - Name:')]
    ends = [i for i, _ in starts[1:]] + [len(lines)]
    return [(name, i, e) for (i, name), e in zip(starts, ends)]


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as the OpenMMLab metafiles."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _dump(key, value, indent):
    text = yaml.dump({key: value}, Dumper=_IndentedDumper, sort_keys=False,
                     allow_unicode=True, width=10000,
                     default_flow_style=False)
    return [' ' * indent + ln for ln in text.splitlines()]


def render_model(entry, studies):
    """A model entry's lines, Results and Study generated."""
    results, study = metafile_results(studies, entry['Config'])
    meta = {k: v for k, v in (entry.get('Metadata') or {}).items()
            if k != 'Study'}
    if study:
        meta['Study'] = study
    lines = [f"  - Name: {entry['Name']}",
             f"    In Collection: {entry['In Collection']}"]
    lines += _dump('Metadata', meta, 4)
    if results:
        lines.append('    # Results: tools/misc/results_tables.py --write')
    lines += _dump('Results', results or None, 4)
    lines.append(f"    Config: {entry['Config']}")
    for key, value in entry.items():
        if key not in ('Name', 'In Collection', 'Metadata', 'Results',
                       'Config'):
            lines += _dump(key, value, 4)
    return lines


def update_metafile(text, studies, path):
    """(text with the studied models' entries rendered, names changed)."""
    meta = yaml.safe_load(text)
    entries = {m['Name']: m for m in meta['Models']}
    studied = {r['config'] for rows in studies.values() for r in rows.values()
               if r['label'] not in UNTRAINED}
    lines = text.splitlines()
    out, pos, changed = [], 0, []
    for name, start, end in _model_spans(lines):
        entry = entries[name]
        if entry['Config'] not in studied and \
                'Study' not in (entry.get('Metadata') or {}):
            continue
        new = render_model(entry, studies)
        old = lines[start:end]
        trailing = []
        while old and not old[-1].strip():
            trailing.insert(0, old.pop())
        if new != old:
            changed.append(name)
        out += lines[pos:start] + new + trailing
        pos = end
    out += lines[pos:]
    return '\n'.join(out) + '\n', changed


def metafiles(root):
    with open(osp.join(root, 'model-index.yml')) as f:
        return yaml.safe_load(f)['Import']


# ------------------------------------------------------------------ main
def run(root, write=False):
    """Problems as 'FILE: table NAME differs ...' lines (rewritten files
    when ``write``); every table rendered, by file."""
    studies = load_studies(root)
    problems, rendered = [], {}
    targets = [(p, 'md') for p in MARKDOWN_BLOCKS] + \
        [(p, 'yml') for p in metafiles(root)]
    for path, kind in targets:
        full = osp.join(root, path)
        with open(full) as f:
            text = f.read()
        if kind == 'md':
            new, changed = update_markdown(text, studies,
                                           MARKDOWN_BLOCKS[path], path)
            what = 'table'
        else:
            new, changed = update_metafile(text, studies, path)
            what = 'Results of'
        rendered[path] = new
        for name in changed:
            problems.append(f'{path}: {what} {name} differs from the study '
                            'JSONs (tools/misc/results_tables.py --write)')
        if write and new != text:
            with open(full, 'w') as f:
                f.write(new)
    return problems, rendered


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--write', action='store_true',
                      help='rewrite the tables in their files')
    mode.add_argument('--check', action='store_true',
                      help='exit 1 naming each file and table that differs')
    parser.add_argument('--root', default='.',
                        help='the checkout to read and write (default: .)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    studies = load_studies(args.root)
    if not (args.check or args.write):
        for name in MARKDOWN_BLOCKS['docs/results.md']:
            print(f'## {name}\n\n{render_block(studies, name)}')
        return 0
    problems, _ = run(args.root, write=args.write)
    if args.check:
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    for p in problems:
        print('updated ' + p.split(' differs')[0])
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f'error: {e}')
