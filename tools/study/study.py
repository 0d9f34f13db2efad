"""Equal-budget study of pretraining configs: pretrain, convert, probe, table.

For every pretraining config and seed, with the tools of a checkout (under
the study's root: ``--root DIR``, else the current working directory; see
``docs/study.md``)::

    tools/train.py CONFIG --work-dir RUN/pretrain --resume --cfg-options ..
    tools/model_converters/mlmask2backbone.py RUN/pretrain/LAST backbone.pth
    tools/train.py RUN/linear_probe_<E>e.py --resume       (fit: train part)
    tools/test.py RUN/linear_probe_<E>e.py LAST --out ...  (report: val part)
    tools/analysis_tools/fewshot.py RUN/pretrain/LAST --data ROOT ...     (train -> val)

then ``study.md`` / ``study.json`` (mean ± sample std over seeds per config
and metric), ``study.png`` and ``commands.sh`` (every command of the study).

Budget: ``iters`` or ``epochs`` per config, divided by the config's cost
ratio when ratios are given (one training iteration of the config = RATIO
plain-MAE steps), so every config gets the same compute.  The length is set
in the config's own unit (``train_cfg.max_iters`` or ``max_epochs``), and the
config's schedules are compressed proportionally: the ``begin`` / ``end`` /
``T_max`` of every ``param_scheduler`` entry and the ``start`` / ``interval``
of every custom hook, so warm-up fractions and switch points keep their
place in the run.

Every step is skipped when its output exists, and training resumes from the
run's last checkpoint (``--resume``), so a study can span several sittings.

This module plans the runs (:class:`Study`); the steps are in
:mod:`study.steps`, the results in :mod:`study.report`, the command line in
:mod:`study.cli`.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config

from mlmask_mm.utils.checkpoint_files import newest_complete_checkpoint

from .continued import kept_checkpoints, parse_continue, spent_budget
from .costs import match_costs, parse_costs
from .data import check_data
from .pretrain_options import UNSAFE, pretrain_options, render_options
from .report import StudyReport
from .reuse import find_reusable, load_reusable
from .run_length import loop_unit, run_length
from .running import check_tools, now, study_root
from .steps import StudySteps

#: the label of ``--random-init``'s rows
RANDOM_INIT = 'random-init'
#: below ROOT/configs/
DEFAULT_PROBE = osp.join(
    'benchmarks', 'vit-tiny-p2_1xb256-linear-coslr-90e_cifar10.py')


class Study(StudySteps, StudyReport):
    """Plan, run (skipping what exists) and summarise one study."""

    def __init__(self, args) -> None:
        self.args = args
        self.root = study_root(getattr(args, 'root', None))
        check_tools(self._tools(), self.root)
        self.out = osp.abspath(args.out_dir)
        self.data = check_data(args.data, args.train_split, args.val_split,
                               args.probe_split)
        self.configs = [osp.abspath(c) for c in args.configs]
        for c in self.configs:
            if not osp.isfile(c):
                raise FileNotFoundError(f'config {c} does not exist')
        self.labels = args.labels or [
            osp.splitext(osp.basename(c))[0] for c in self.configs]
        if len(self.labels) != len(self.configs):
            raise ValueError(f'--labels: {len(self.labels)} names for '
                             f'{len(self.configs)} configs')
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f'--labels / config names must differ: '
                             f'{self.labels}')
        if args.random_init and RANDOM_INIT in self.labels:
            raise ValueError(f'label {RANDOM_INIT!r} is --random-init\'s')
        for label in self.labels:
            if UNSAFE.search(label) or '/' in label:
                raise ValueError(f'label {label!r}: use letters, digits, '
                                 '"-", "_" and "."')
        costs = parse_costs(args.cost or (), args.cost_file or ())
        self.costs = match_costs(self.configs, costs, self.labels) \
            if costs else \
            {c: 1.0 for c in self.configs}
        self.budget_unit = 'iters' if args.iters is not None else 'epochs'
        self.budget = args.iters if args.iters is not None else args.epochs
        if not self.budget or self.budget <= 0:
            raise ValueError(f'--{self.budget_unit} must be positive, got '
                             f'{self.budget}')
        self.probe = osp.abspath(args.probe_config or osp.join(
            self.root, 'configs', DEFAULT_PROBE))
        if 'linear' in args.probes and not osp.isfile(self.probe):
            raise FileNotFoundError(f'--probe-config {self.probe} does not '
                                    'exist')
        self.probe_epochs = args.probe_epochs or int(
            Config.fromfile(self.probe).train_cfg.max_epochs) \
            if 'linear' in args.probes else None
        self.continued = parse_continue(args.continue_from, self.labels)
        self.runs = []
        for c, label in zip(self.configs, self.labels):
            for seed in args.seeds:
                base = None
                if label in self.continued:
                    base = next(r for r in self.runs if r['seed'] == seed and
                                r['label'] == self.continued[label][0])
                self.runs.append(self._plan(c, label, seed, base))
        self.rows = list(zip(self.configs, self.labels))
        if args.random_init:
            self.rows.append((self.configs[0], RANDOM_INIT))
            self.runs += [self._plan_random_init(seed) for seed in args.seeds]
        self.commands: List[str] = []
        self._reuse(args.reuse)

    def _tools(self) -> List[str]:
        """The tools (:data:`~study.running.TOOLS`) this study's steps
        call."""
        a = self.args
        names = ['train']
        if a.probes:
            names.append('convert')
        if 'linear' in a.probes:
            names.append('test')
        if 'fewshot' in a.probes:
            names.append('fewshot')
        if a.random_init:
            names.append('init')
        if a.mask_content:
            names.append('mask_content')
        return names

    def _reuse(self, paths: Optional[Sequence[str]]) -> None:
        """Mark the runs that an earlier study.json finished (--reuse);
        a continued run that must still train needs its base's
        checkpoint here."""
        if not paths:
            return
        records = load_reusable(paths, self.settings())
        names = self.metric_names()
        for run in self.runs:
            rec = find_reusable(records, run, names)
            if rec is not None and self.args.mask_content and not \
                    run.get('random_init') and 'mask_content' not in rec:
                rec = None  # its masks were not tested there
            if rec is not None:
                run['reused'] = rec
        for run in self.runs:
            start = run.get('start_from')
            if (run.get('reused') or not start or self.args.dry_run or
                    osp.isfile(start) or osp.isfile(run['checkpoint']) or
                    newest_complete_checkpoint(
                        osp.join(run['dir'], 'pretrain')) is not None):
                continue
            base = next(r for r in self.runs if r['seed'] == run['seed'] and
                        r['label'] == run['length']['continued']['label'])
            if base.get('reused'):
                raise ValueError(
                    f'--reuse: {run["label"]} seed {run["seed"]} continues '
                    f'from {start}, which this machine lacks (its base run '
                    f'{base["label"]} seed {run["seed"]} is reused from '
                    f'{base["reused"]["reused_from"]}): run the base here '
                    'too (drop it from the reused JSON) or reuse both')

    # -- planning (everything checked before the first step runs)
    def _plan(self, config: str, label: str, seed: int,
              base: Optional[Dict] = None) -> Dict:
        cfg = Config.fromfile(config)
        user = dict(self.args.cfg_options or {})
        cfg.merge_from_dict(user)
        budget, start = self.budget, None
        if base is not None:  # --continue LABEL=BASE@N
            n = self.continued[label][1]
            blen = base['length']
            kept = kept_checkpoints(blen['length'], base['ckpt_interval'])
            if n not in kept:
                raise ValueError(
                    f'--continue {label}={base["label"]}@{n}: a run of '
                    f'{base["label"]} keeps the checkpoints after {kept} '
                    f'{blen["unit"]} (set --ckpt-interval to keep {n})')
            spent = spent_budget(blen, n, self.budget_unit)
            budget = self.budget - spent['budget']
            if budget <= 0:
                raise ValueError(
                    f'--continue {label}={base["label"]}@{n}: those {n} '
                    f'{blen["unit"]} cost the whole budget ({self.budget} '
                    f'{self.budget_unit})')
            prefix = 'iter' if blen['unit'] == 'iters' else 'epoch'
            start = osp.join(base['dir'], 'pretrain', f'{prefix}_{n}.pth')
            render_options({'load_from': start})  # a path --cfg-options carry
        length = run_length(cfg, self.budget_unit, budget,
                            self.costs[config], self.data['num_train'])
        if base is not None:
            length['continued'] = dict(
                label=base['label'], at=n, unit=base['length']['unit'],
                checkpoint=start, **spent)
            length['mae_steps'] += spent['mae_steps']
        name = f'{length["unit"]}{length["length"]}_seed{seed}'
        if base is not None:
            name = f'from-{base["label"]}{n}_{name}'
        run_dir = osp.join(self.out, 'runs', label, name)
        opts = pretrain_options(
            cfg, self.data, length, seed, self.args.num_workers,
            self.args.ckpt_interval, experiment_name=f'{label}_{name}')
        clash = sorted(set(user) & set(opts))
        if clash:
            raise ValueError(
                f'--cfg-options {clash}: the study sets these itself (data: '
                '--data, length: --iters/--epochs, seed: --seeds, ...)')
        opts = dict(user, **opts)
        merged = Config.fromfile(config)
        merged.merge_from_dict(dict(opts))  # the overrides apply cleanly
        loop_unit(merged)
        prefix = 'iter' if length['unit'] == 'iters' else 'epoch'
        return dict(
            config=config, label=label, seed=seed, cfg=cfg, dir=run_dir,
            length=length, options=render_options(opts),
            ckpt_interval=opts['default_hooks.checkpoint.interval'],
            start_from=start,
            checkpoint=osp.join(run_dir, 'pretrain',
                                f'{prefix}_{length["length"]}.pth'),
            backbone=osp.join(run_dir, 'backbone.pth'),
            probe_dir=osp.join(
                run_dir, f'linear_probe_{self.probe_epochs}e{self._suffix}'),
            fewshot_dir=osp.join(run_dir, self._fewshot_name))

    def _plan_random_init(self, seed: int) -> Dict:
        """The untrained model of the first config, probed like the
        pretrained ones (``tools/misc/init_checkpoint.py``)."""
        config = self.configs[0]
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(dict(self.args.cfg_options or {}))
        run_dir = osp.join(self.out, 'runs', RANDOM_INIT, f'init_seed{seed}')
        length = dict(unit='iters', length=0, iterations=0,
                      iters_per_epoch=None, ratio=0.0, mae_steps=0,
                      batch_size=int(cfg.train_dataloader.batch_size))
        return dict(
            config=config, label=RANDOM_INIT, seed=seed, cfg=cfg,
            dir=run_dir, length=length, options=[], random_init=True,
            start_from=None,
            checkpoint=osp.join(run_dir, 'pretrain', 'init.pth'),
            backbone=osp.join(run_dir, 'backbone.pth'),
            probe_dir=osp.join(
                run_dir, f'linear_probe_{self.probe_epochs}e{self._suffix}'),
            fewshot_dir=osp.join(run_dir, self._fewshot_name))

    @property
    def _fewshot_name(self) -> str:
        """``fewshot[_<feature>][_<probe split>]``: the class token's
        folder keeps its old name."""
        feature = self.args.fewshot_feature
        return 'fewshot' + ('' if feature == 'cls_token' else
                            f'_{feature}') + self._suffix

    @property
    def _suffix(self) -> str:
        """Probe folders of another probe split get its name."""
        probe = self.data['probe_split']
        return '' if probe == self.data['train_split'] else f'_{probe}'

    def run(self) -> Dict:
        os.makedirs(self.out, exist_ok=True)
        probes = self.args.probes
        for run in self.runs:
            if run.get('reused'):
                self.commands.append(
                    f'# {run["label"]} seed {run["seed"]}: results reused '
                    f'from {run["reused"]["reused_from"]}')
                continue
            self.pretrain(run)
            if probes:
                self.convert(run)
            if 'linear' in probes:
                self.linear(run)
            if 'fewshot' in probes:
                self.fewshot(run)
            if self.args.mask_content and not run.get('random_init'):
                self.mask_content(run)
            if not self.args.dry_run:
                # the tables so far: a study spread over machines keeps
                # every finished run (--reuse)
                self.write_results()
        date = now()
        self.write_commands(date)
        if self.args.dry_run:
            print(f'[study] dry run: {len(self.commands)} commands in '
                  f'{osp.join(self.out, "commands.sh")}')
            return dict(commands=self.commands)
        result, rows, table = self.write_results(date)
        if not self.args.no_plot:
            self.plot(rows, osp.join(self.out, 'study.png'))
        print(table)
        print(f'[study] written to {self.out}/study.{{md,json'
              f'{"" if self.args.no_plot else ",png"}}} and commands.sh')
        return result
