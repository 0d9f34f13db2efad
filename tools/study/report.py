"""The study's results: one record per run from its folder, the summary
over seeds (mean ± sample std), ``study.json``, ``study.md`` and
``commands.sh``."""
import math
import os
import os.path as osp
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

from .continued import logged_mean
from .plot import plot_study
from .reuse import complete
from .running import now, read_json, write_json

#: the analyze_mask_content figures the study's table shows
CONTENT_KEYS = ('flip_same', 'flip_reference', 'shift_same',
                'shift_reference', 'shuffle_same', 'mean_colour_same',
                'between_images', 'texture_auc', 'mask_specificity')


def mean_std(values: Sequence[float]) -> Tuple[Optional[float],
                                                Optional[float]]:
    """Mean and sample std (ddof 1; None for fewer than two values)."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return None, None
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((x - m)**2 for x in v) / (len(v) - 1))


def fmt(mean: Optional[float], std: Optional[float], digits: int = 1) -> str:
    if mean is None:
        return '–'
    return f'{mean:.{digits}f} ± ' + ('–' if std is None else
                                      f'{std:.{digits}f}')


class StudyReport:
    """The results of :class:`~study.study.Study` (``self.args``,
    ``self.root``, ``self.out``, ``self.runs``, ``self.rows``,
    ``self.commands`` come from it)."""

    def collect(self, run: Dict) -> Dict:
        if run.get('reused'):
            return dict(run['reused'], dir=run['dir'], complete=True)
        rec = self._collect(run)
        rec['complete'] = complete(rec, self.metric_names())
        return rec

    def _collect(self, run: Dict) -> Dict:
        a = self.args
        rec = dict(config=osp.relpath(run['config'], self.root)
                   if run['config'].startswith(self.root) else run['config'],
                   label=run['label'], seed=run['seed'], dir=run['dir'],
                   **{k: run['length'][k] for k in (
                       'unit', 'length', 'iterations', 'iters_per_epoch',
                       'batch_size', 'ratio', 'mae_steps')})
        timing = osp.join(run['dir'], 'pretrain_time.json')
        rec['pretrain_seconds'] = read_json(timing)['seconds'] \
            if osp.isfile(timing) else None
        if 'continued' in run['length']:
            rec['continued'] = run['length']['continued']
        # the masks of the last tenth of the run, as trained (every masking
        # method logs it; docs/study.md)
        rec['mask_specificity'] = None if run.get('random_init') else \
            logged_mean(osp.join(run['dir'], 'pretrain'), 'mask_specificity',
                        final_iter=run['length']['iterations'])
        content = osp.join(run['dir'], 'mask_content.json')
        if self.args.mask_content and osp.isfile(content):
            c = read_json(content)
            rec['mask_content'] = {k: c[k] for k in CONTENT_KEYS}
        metrics = osp.join(run['probe_dir'], 'metrics.json')
        rec['metrics'] = {}
        if 'linear' in a.probes and osp.isfile(metrics):
            m = read_json(metrics)
            rec['metrics']['linear_top1'] = m.get('accuracy/top1')
            if 'accuracy/top5' in m:
                rec['metrics']['linear_top5'] = m['accuracy/top5']
        result = osp.join(run['fewshot_dir'], 'fewshot.json')
        if 'fewshot' in a.probes and osp.isfile(result):
            for r in read_json(result)['results']:
                if r['shots'] in a.shots:
                    rec['metrics'][f'fewshot_{r["shots"]}shot_top1'] = \
                        r['acc1_mean']
        return rec

    def metric_names(self) -> List[str]:
        names = []
        if 'linear' in self.args.probes:
            names.append('linear_top1')
            if len(self.data['classes']) > 5:
                names.append('linear_top5')
        if 'fewshot' in self.args.probes:
            names += [f'fewshot_{n}shot_top1' for n in self.args.shots]
        return names

    def summary(self, records: List[Dict]) -> List[Dict]:
        rows = []
        for config, label in self.rows:
            recs = [r for r in records if r['label'] == label]
            row = dict(label=label, config=recs[0]['config'],
                       seeds=[r['seed'] for r in recs],
                       **{k: recs[0][k] for k in (
                           'unit', 'length', 'iterations', 'ratio',
                           'mae_steps', 'batch_size')})
            row['pretrain_seconds'] = dict(zip(
                ('mean', 'std'),
                mean_std([r['pretrain_seconds'] for r in recs])))
            if 'continued' in recs[0]:
                row['continued'] = {k: recs[0]['continued'][k]
                                    for k in ('label', 'at', 'unit')}
            values = [r['mask_specificity'] for r in recs]
            mean, std = mean_std(values)
            row['mask_specificity'] = dict(
                mean=mean, std=std, n=sum(v is not None for v in values),
                values=values)
            row['metrics'] = {}
            for name in self.metric_names():
                values = [r['metrics'].get(name) for r in recs]
                mean, std = mean_std(values)
                row['metrics'][name] = dict(
                    mean=mean, std=std, n=sum(v is not None for v in values),
                    values=values)
            rows.append(row)
        return rows

    def settings(self) -> Dict:
        a = self.args
        return dict(
            budget=dict(unit=self.budget_unit, value=self.budget,
                        costs={osp.basename(c): r
                               for c, r in self.costs.items()},
                        cost_given=bool(a.cost or a.cost_file)),
            seeds=list(a.seeds), probes=list(a.probes),
            probe_config=self.probe, probe_epochs=self.probe_epochs,
            probe_batch_size=a.probe_batch_size, shots=list(a.shots),
            fewshot_seeds=a.fewshot_seeds, fewshot_feature=a.fewshot_feature,
            mask_content_images=a.mask_content,
            data={k: v for k, v in self.data.items() if k != 'classes'},
            classes=self.data['classes'])

    def markdown(self, rows: List[Dict], records: List[Dict],
                 date: str) -> str:
        s = self.settings()
        names = self.metric_names()
        titles = {'linear_top1': 'linear top-1', 'linear_top5': 'linear top-5'}
        titles.update({f'fewshot_{n}shot_top1': f'{n}-shot top-1'
                       for n in self.args.shots})
        budget = (f'{self.budget} {self.budget_unit}' +
                  (' of plain MAE, divided by each config\'s cost ratio'
                   if s['budget']['cost_given'] else ' per config'))
        lines = [
            '# Study', '',
            f'Written {date} by `tools/misc/study.py`. Data: '
            f'`{self.data["root"]}`, pretraining on '
            f'`{self.data["train_split"]}/` ({self.data["num_train"]} '
            f'images, {len(self.data["classes"])} classes), probes fitted '
            f'on `{self.data["probe_split"]}/` ({self.data["num_probe"]} '
            'images), reported on '
            f'`{self.data["val_split"]}/` ({self.data["num_val"]} images). '
            f'Budget: {budget}. '
            f'Seeds: {", ".join(map(str, self.args.seeds))}. '
            'Cells: mean ± sample std over the seeds (– : one value) in %; '
            'linear probe: `' + osp.basename(self.probe) + '` '
            f'({self.probe_epochs} epoch'
            f'{"" if self.probe_epochs == 1 else "s"}) on the frozen '
            'converted backbone; n-shot: `tools/analysis_tools/fewshot.py` on the '
            'pretraining checkpoint, ' + (
                'class token' if self.args.fewshot_feature == 'cls_token'
                else 'mean of the patch tokens') + ', L-BFGS softmax '
            'regression, '
            f'mean over {self.args.fewshot_seeds} draws per seed. '
            'Mask specificity: `mask_specificity` as logged in the last '
            'tenth of the pretraining (1: independent random masks, 0: one '
            'pattern for every image; – : not logged). '
            'Commands: `commands.sh`.', '',
            '| config | seeds | length | iterations | cost ratio | '
            'MAE-step eq. | pretrain s/run | mask specificity | ' +
            ' | '.join(titles[n] for n in names) + ' |',
            '|---|---:|---:|---:|---:|---:|---:|---:|' + '---:|' * len(names),
        ]
        for row in rows:
            t = row['pretrain_seconds']
            ms = row['mask_specificity']
            length = f'{row["length"]} {row["unit"]}'
            if 'continued' in row:
                c = row['continued']
                length += f' after {c["label"]} {c["at"]} {c["unit"]}'
            lines.append(
                f'| {row["label"]} | {len(row["seeds"])} | '
                f'{length} | {row["iterations"]} | '
                f'{row["ratio"]:g} | {row["mae_steps"]:g} | '
                f'{fmt(t["mean"], t["std"], 0)} | '
                f'{fmt(ms["mean"], ms["std"], 2)} | ' +
                ' | '.join(fmt(row['metrics'][n]['mean'],
                               row['metrics'][n]['std']) for n in names) +
                ' |')
        lines += ['', '## Runs', '',
                  '| config | seed | pretrain s | ' +
                  ' | '.join(titles[n] for n in names) + ' | run folder |',
                  '|---|---:|---:|' + '---:|' * len(names) + '---|']
        for r in records:
            secs = r['pretrain_seconds']
            lines.append(
                f'| {r["label"]} | {r["seed"]} | '
                f'{"–" if secs is None else f"{secs:.0f}"} | ' +
                ' | '.join('–' if r['metrics'].get(n) is None else
                           f'{r["metrics"][n]:.1f}' for n in names) +
                f' | `{osp.relpath(r["dir"], self.out)}` |')
        if self.args.mask_content:
            lines += self._content_table(records)
        return '\n'.join(lines) + '\n'

    def _content_table(self, records: List[Dict]) -> List[str]:
        lines = [
            '', '## Masks on whole images', '',
            f'`tools/analysis_tools/analyze_mask_content.py` on '
            f'{self.args.mask_content} images of `{self.data["probe_split"]}'
            '/` with the final checkpoint (docs/cl_mae.md): share of '
            'keep/mask decisions unchanged at the same positions after a '
            'flip / a shift by 2 patches / a patch shuffle (reference: what '
            'a masker that follows the content would keep), after filling '
            'the image with its mean colour (beside two different images), '
            'and P(a kept patch is more textured than a masked one). '
            'Random masks: about r² + (1-r)² everywhere, AUC 0.5.', '',
            '| config | seed | flip same (ref.) | shift same (ref.) | '
            'shuffle same | mean colour same (between images) | '
            'texture AUC | mask specificity |',
            '|---|---:|---:|---:|---:|---:|---:|---:|']
        for r in records:
            c = r.get('mask_content')
            if not c:
                continue
            lines.append(
                f'| {r["label"]} | {r["seed"]} | {c["flip_same"]:.3f} '
                f'({c["flip_reference"]:.3f}) | {c["shift_same"]:.3f} '
                f'({c["shift_reference"]:.3f}) | {c["shuffle_same"]:.3f} | '
                f'{c["mean_colour_same"]:.3f} ({c["between_images"]:.3f}) | '
                f'{c["texture_auc"]:.3f} | {c["mask_specificity"]:.3f} |')
        return lines

    def plot(self, rows: List[Dict], path: str) -> None:
        plot_study(rows, path, self.args, self.data, self.budget,
                   self.budget_unit)

    def write_commands(self, date: str) -> None:
        path = osp.join(self.out, 'commands.sh')
        with open(path, 'w') as f:
            f.write('#!/usr/bin/env bash\n'
                    f'# The commands of this study (tools/misc/study.py, '
                    f'{date}); each step is\n# skipped by the study tool when '
                    'its output exists.\n'
                    f'# study: {shlex.join(self.args.argv)}\n'
                    'set -e\n'
                    f'cd {shlex.quote(self.root)}\n'
                    f'export PYTHONPATH={shlex.quote(self.root)}'
                    '${PYTHONPATH:+:$PYTHONPATH}\n')
            for c in self.commands:
                f.write(c + '\n')
        os.chmod(path, 0o755)

    def write_results(self, date: Optional[str] = None):
        """study.json and study.md from what the run folders hold now
        (runs not finished yet: ``complete`` false, – in the tables)."""
        date = date or now()
        records = [self.collect(r) for r in self.runs]
        rows = self.summary(records)
        result = dict(date=date, settings=self.settings(), summary=rows,
                      runs=records)
        write_json(result, osp.join(self.out, 'study.json'))
        table = self.markdown(rows, records, date)
        with open(osp.join(self.out, 'study.md'), 'w') as f:
            f.write(table)
        return result, rows, table
