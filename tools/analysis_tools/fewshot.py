"""Few-shot linear probing of frozen pretrained encoders.

    python tools/analysis_tools/fewshot.py MODEL [MODEL ...]
        --data DIR [DIR ...]
        [--shots 1 2 4 8 16] [--seeds 3] [--config CONFIG]
        [--feature {cls_token,mean_patch}] [--normalize {l2,none}]
        [--labels NAME ...] [--out-dir DIR] [--cache-dir DIR]

MODEL is a checkpoint (``.pth``) or a config (``.py``, the backbone with its
own random initialisation: a baseline).  The architecture of a checkpoint is
the config the Runner embedded in it (``meta.cfg``), or ``--config`` (which
then applies to every checkpoint; needed for checkpoints without one, such as
mmpretrain's released MAE weights).  The backbone's weights are the
checkpoint's ``backbone.*`` keys, loaded weights-only and strictly.

Every ``--data DIR`` holds two class-folder trees, ``DIR/train/<class>/`` and
``DIR/test/<class>/`` (names set by ``--train-split`` / ``--test-split``),
with the same classes.  For every model and dataset the features of both
splits are extracted once and cached in ``--cache-dir``; then for every shot
count n and seed s = 0 .. S-1, n images per class are drawn from the train
split, a linear classifier is fitted by L-BFGS and evaluated on the whole
test split.  Written to ``--out-dir``: ``fewshot.md`` (one table per model:
rows = shots, columns = dataset x {Acc@1, Acc@5}, mean ± std over seeds),
``fewshot.csv``, ``fewshot.json`` (with the per-seed values) and
``fewshot.png`` (Acc@1 vs shots, one line per model, one panel per dataset).
"""
import argparse
import csv
import hashlib
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch
import mlmask_mm  # noqa: F401  (registers everything, safe checkpoints)
from mlmask_mm.evaluation import (NORMALIZATIONS, POOLINGS,
                                  build_frozen_extractor, check_shots,
                                  embedded_config, extract_features,
                                  extractor_config, few_shot_accuracies,
                                  folder_dataset, image_size,
                                  load_checkpoint_safely, load_config,
                                  mean_std)

FEATURE_TEXT = {
    'cls_token': 'class token after the final LayerNorm',
    'mean_patch': 'mean of the patch tokens after the final LayerNorm',
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Few-shot linear probing of frozen encoders',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('models', nargs='+', metavar='MODEL',
                   help='checkpoints (.pth) or configs (.py: random init)')
    p.add_argument('--data', nargs='+', required=True, metavar='DIR',
                   help='datasets, each with DIR/<train-split>/<class>/ and '
                   'DIR/<test-split>/<class>/')
    p.add_argument('--shots', nargs='+', type=int, default=[1, 2, 4, 8, 16])
    p.add_argument('--seeds', type=int, default=3,
                   help='number of seeds (0 .. S-1) per shot count')
    p.add_argument('--config', help='architecture (pretraining config) for '
                   'every checkpoint, instead of the one embedded in it')
    p.add_argument('--labels', nargs='+', help='names of the models in the '
                   'outputs (default: from the file names)')
    p.add_argument('--feature', choices=POOLINGS, default='cls_token')
    p.add_argument('--normalize', choices=NORMALIZATIONS, default='l2',
                   help='feature normalisation before the classifier')
    p.add_argument('--weight-decay', type=float, default=1e-4,
                   help='L2 penalty lambda/2 |W|^2 of the classifier')
    p.add_argument('--max-iter', type=int, default=500,
                   help='L-BFGS iterations per classifier')
    p.add_argument('--train-split', default='train')
    p.add_argument('--test-split', default='test')
    p.add_argument('--out-dir', default='work_dirs/fewshot')
    p.add_argument('--cache-dir', help='feature cache (default: '
                   'OUT_DIR/cache)')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--no-plot', action='store_true')
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f'--seeds {args.seeds}: at least one seed')
    if any(n < 1 for n in args.shots):
        p.error(f'--shots {args.shots}: every shot count must be >= 1')
    if args.labels and len(args.labels) != len(args.models):
        p.error(f'--labels: {len(args.labels)} names for '
                f'{len(args.models)} models')
    args.shots = sorted(set(args.shots))
    return args


# ---------------------------------------------------------------- models
def default_labels(paths: Sequence[str]) -> List[str]:
    """File names without extension; parent folder added when ambiguous."""
    names = [osp.splitext(osp.basename(p))[0] for p in paths]
    if len(set(names)) < len(names):
        names = [f'{osp.basename(osp.dirname(osp.abspath(p)))}/{n}'
                 for p, n in zip(paths, names)]
    return names


def resolve_model(path: str, config: Optional[str], feature: str) -> Dict:
    """``{path, checkpoint, config, extractor}`` for one MODEL argument;
    raises before any extraction when the architecture is unknown."""
    if path.endswith('.py'):
        cfg = load_config(path)
        source, checkpoint = path, None
    else:
        if not osp.isfile(path):
            raise FileNotFoundError(f'MODEL {path!r} is not a file')
        checkpoint = path
        if config:
            cfg, source = load_config(config), config
        else:
            cfg = embedded_config(load_checkpoint_safely(path))
            source = f'{path} (meta.cfg)'
            if cfg is None:
                raise ValueError(
                    f'{path} has no embedded config (meta.cfg): pass its '
                    'pretraining config with --config')
    return dict(path=path, checkpoint=checkpoint, config=source, cfg=cfg,
                extractor=extractor_config(cfg, feature))


# ---------------------------------------------------------------- datasets
def load_datasets(roots: Sequence[str], train_split: str, test_split: str,
                  img_size: Sequence[int]) -> List[Dict]:
    out = []
    for root in roots:
        splits = {}
        for key, split in (('train', train_split), ('test', test_split)):
            folder = osp.join(root, split)
            if not osp.isdir(folder):
                raise FileNotFoundError(
                    f'--data {root}: {folder} is not a folder (expected '
                    f'{root}/{train_split}/<class>/ and {root}/{test_split}/'
                    '<class>/)')
            splits[key] = folder_dataset(folder, img_size)
        train_classes = list(splits['train'].CLASSES)
        test_classes = list(splits['test'].CLASSES)
        if train_classes != test_classes:
            raise ValueError(
                f'--data {root}: the {train_split} and {test_split} splits '
                'have different classes: only in train '
                f'{sorted(set(train_classes) - set(test_classes))}, only in '
                f'test {sorted(set(test_classes) - set(train_classes))}')
        name = osp.basename(osp.normpath(root))
        out.append(dict(name=name, root=root, classes=train_classes,
                        **splits))
    names = [d['name'] for d in out]
    if len(set(names)) < len(names):
        raise ValueError(f'--data: two datasets share a folder name {names}')
    return out


def dataset_labels(dataset) -> List[int]:
    return [int(dataset.get_data_info(i)['gt_label'])
            for i in range(len(dataset))]


def cache_key(model: Dict, dataset, split_root: str) -> str:
    """Hash of what the features depend on: the weights file (path, size,
    mtime), the extractor config, the images (paths and labels)."""
    h = hashlib.sha1()
    if model['checkpoint']:
        st = os.stat(model['checkpoint'])
        h.update(f'{osp.abspath(model["checkpoint"])}|{st.st_size}|'
                 f'{st.st_mtime_ns}'.encode())
    else:
        h.update(f'random-init|{osp.abspath(model["path"])}'.encode())
    h.update(json.dumps(model['extractor'], sort_keys=True,
                        default=str).encode())
    h.update(osp.abspath(split_root).encode())
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        h.update(f'{info["img_path"]}|{info["gt_label"]}\n'.encode())
    return h.hexdigest()[:16]


def cached_features(model: Dict, extractor_fn, dataset, split_root: str,
                    cache_dir: str, args, log) -> Dict:
    key = cache_key(model, dataset, split_root)
    path = osp.join(cache_dir, f'{key}.pt')
    if osp.isfile(path):
        log(f'  features of {split_root}: cached {path}')
        return torch.load(path, map_location='cpu', weights_only=True)
    start = time.time()
    features, labels = extract_features(
        extractor_fn(), dataset, args.batch_size, args.num_workers,
        args.device)
    entry = dict(features=features, labels=labels,
                 classes=list(dataset.CLASSES), split_root=split_root,
                 model=model['path'], feature=args.feature)
    os.makedirs(cache_dir, exist_ok=True)
    torch.save(entry, path)
    log(f'  features of {split_root}: {tuple(features.shape)} in '
        f'{time.time() - start:.1f} s -> {path}')
    return entry


# ---------------------------------------------------------------- outputs
def fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return '—'
    return f'{mean:.1f} ± {std:.1f}'


def markdown_table(results: Dict) -> str:
    """One block per model: rows = shots, columns = dataset x {Acc@1,
    Acc@5}, cells 'mean ± std' (%)."""
    meta = results['settings']
    datasets = [d['name'] for d in results['datasets']]
    lines = [
        '# Few-shot linear probe',
        '',
        f'Features: {meta["feature"]} ({FEATURE_TEXT[meta["feature"]]}), '
        f'{meta["normalize"]}-normalised; linear classifier: L-BFGS '
        f'softmax regression, weight decay {meta["weight_decay"]:g}. '
        f'Top-1 / top-5 accuracy (%) on the whole test split, mean ± std '
        f'over {len(meta["seeds"])} seed(s) of the n-shot draw.'
        ' "—": top-5 is not reported for 5 classes or fewer.',
        '',
    ]
    by_key = {(r['model'], r['dataset'], r['shots']): r
              for r in results['results']}
    for m in results['models']:
        lines += [f'## {m["label"]}', '',
                  f'`{m["path"]}` (architecture: `{m["config"]}`)', '']
        header = '| shots | ' + ' | '.join(
            f'{d} Acc@1 | {d} Acc@5' for d in datasets) + ' |'
        lines += [header, '|---:|' + '---:|' * (2 * len(datasets))]
        for n in meta['shots']:
            cells = []
            for d in datasets:
                r = by_key[(m['label'], d, n)]
                cells += [fmt(r['acc1_mean'], r['acc1_std']),
                          fmt(r['acc5_mean'], r['acc5_std'])]
            lines.append(f'| {n} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    return '\n'.join(lines)


CSV_FIELDS = ('model', 'dataset', 'feature', 'shots', 'seeds', 'acc1_mean',
              'acc1_std', 'acc5_mean', 'acc5_std')


def write_csv(results: Dict, path: str) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for r in results['results']:
            writer.writerow([
                r['model'], r['dataset'], results['settings']['feature'],
                r['shots'], len(r['acc1'])
            ] + [('' if math.isnan(r[k]) else f'{r[k]:.4f}')
                 for k in CSV_FIELDS[5:]])


def plot(results: Dict, path: str) -> None:
    """Acc@1 vs shots (log2 axis), one line per model (± std band), one
    panel per dataset."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    datasets = [d['name'] for d in results['datasets']]
    shots = results['settings']['shots']
    fig, axes = plt.subplots(1, len(datasets), squeeze=False,
                             figsize=(4.5 * len(datasets), 3.6))
    for ax, d in zip(axes[0], datasets):
        for m in results['models']:
            rows = sorted((r for r in results['results']
                           if r['model'] == m['label'] and r['dataset'] == d),
                          key=lambda r: r['shots'])
            mean = [r['acc1_mean'] for r in rows]
            std = [r['acc1_std'] for r in rows]
            ax.plot(shots, mean, marker='o', label=m['label'])
            ax.fill_between(shots, [a - s for a, s in zip(mean, std)],
                            [a + s for a, s in zip(mean, std)], alpha=0.2)
        ax.set_xscale('log', base=2)
        ax.set_xticks(shots)
        ax.set_xticklabels([str(n) for n in shots])
        ax.set_xlabel('samples per class')
        ax.set_ylabel('top-1 accuracy (%)')
        ax.set_title(d)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _no_nan(obj):
    """NaN (top-5 not applicable) as JSON null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


# ---------------------------------------------------------------- main
def main(argv=None) -> Dict:
    args = parse_args(argv)
    log = print
    cache_dir = args.cache_dir or osp.join(args.out_dir, 'cache')
    labels = args.labels or default_labels(args.models)
    if len(set(labels)) < len(labels):
        sys.exit(f'error: --labels {labels}: names must differ')

    # everything that can be wrong is checked before the first forward pass
    models = [resolve_model(p, args.config, args.feature)
              for p in args.models]
    sizes = {tuple(image_size(m['extractor']['backbone'])) for m in models}
    datasets = {size: load_datasets(args.data, args.train_split,
                                    args.test_split, size) for size in sizes}
    for d in next(iter(datasets.values())):
        check_shots(dataset_labels(d['train']), d['classes'],
                    max(args.shots),
                    f'{args.train_split} split of {d["root"]}')

    seeds = list(range(args.seeds))
    results = dict(
        settings=dict(feature=args.feature, normalize=args.normalize,
                      weight_decay=args.weight_decay, max_iter=args.max_iter,
                      shots=args.shots, seeds=seeds,
                      train_split=args.train_split,
                      test_split=args.test_split),
        models=[], datasets=[], results=[])
    for d in next(iter(datasets.values())):
        results['datasets'].append(dict(
            name=d['name'], root=d['root'], num_classes=len(d['classes']),
            train_images=len(d['train']), test_images=len(d['test'])))

    for label, m in zip(labels, models):
        log(f'{label}: {m["path"]} (architecture: {m["config"]})')
        results['models'].append(dict(label=label, path=m['path'],
                                      config=m['config']))
        size = tuple(image_size(m['extractor']['backbone']))
        extractor = []

        def extractor_fn(m=m, extractor=extractor):
            if not extractor:  # built once per model, only when needed
                extractor.append(build_frozen_extractor(
                    m['cfg'], args.feature, m['checkpoint']))
            return extractor[0]

        for d in datasets[size]:
            feats = {
                split: cached_features(
                    m, extractor_fn, d[split],
                    osp.join(d['root'], getattr(args, f'{split}_split')),
                    cache_dir, args, log)
                for split in ('train', 'test')
            }
            for n in args.shots:
                accs = few_shot_accuracies(
                    feats['train']['features'], feats['train']['labels'],
                    feats['test']['features'], feats['test']['labels'],
                    d['classes'], n, seeds, args.normalize,
                    args.weight_decay, args.max_iter)
                acc1 = [a for a, _ in accs]
                acc5 = [b for _, b in accs]
                a1, s1 = mean_std(acc1)
                a5, s5 = mean_std(acc5)
                results['results'].append(dict(
                    model=label, dataset=d['name'], shots=n, seeds=seeds,
                    acc1=acc1, acc5=acc5, acc1_mean=a1, acc1_std=s1,
                    acc5_mean=a5, acc5_std=s5))
                log(f'  {d["name"]} {n}-shot: Acc@1 {fmt(a1, s1)}  '
                    f'Acc@5 {fmt(a5, s5)}')

    os.makedirs(args.out_dir, exist_ok=True)
    table = markdown_table(results)
    with open(osp.join(args.out_dir, 'fewshot.md'), 'w') as f:
        f.write(table + '\n')
    write_csv(results, osp.join(args.out_dir, 'fewshot.csv'))
    with open(osp.join(args.out_dir, 'fewshot.json'), 'w') as f:
        json.dump(_no_nan(results), f, indent=1)
    if not args.no_plot:
        plot(results, osp.join(args.out_dir, 'fewshot.png'))
    log('\n' + table)
    log(f'written to {args.out_dir}/fewshot.{{md,csv,json'
        f'{"" if args.no_plot else ",png"}}}')
    return results


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
