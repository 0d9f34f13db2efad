"""The steps of one study run (pretrain, convert, linear probe, few-shot
probe, mask content), each one tool of the checkout under the study's root,
skipped when its output exists."""
import os
import os.path as osp
import shlex
from typing import Dict, List, Optional, Sequence

from mlmask_mm.utils.checkpoint_files import newest_complete_checkpoint

from .linear_probe import probe_config
from .running import (close_sitting, open_sitting, python_command,
                      read_json, run_command)


class StudySteps:
    """The steps of :class:`~study.study.Study` (``self.args``, ``self.root``,
    ``self.data``, ``self.probe``, ``self.probe_epochs``, ``self.commands``
    come from it)."""

    def _command(self, name: str, args: Sequence) -> List[str]:
        return python_command(name, args, self.root)

    def _step(self, cmd: List[str], done: bool, log: str) -> Optional[float]:
        self.commands.append(shlex.join(cmd))
        if done or self.args.dry_run:
            return None
        os.makedirs(osp.dirname(log), exist_ok=True)
        print(f'[study] {shlex.join(cmd)}', flush=True)
        seconds = run_command(cmd, log, self.args.in_process,
                              root=self.root)
        print(f'[study] done in {seconds:.1f} s', flush=True)
        return seconds

    def pretrain(self, run: Dict) -> None:
        if run.get('random_init'):
            self._step(self._command('init', [
                run['config'], run['checkpoint'], '--seed', run['seed']]),
                osp.isfile(run['checkpoint']),
                osp.join(run['dir'], 'init.log'))
            return
        work = osp.join(run['dir'], 'pretrain')
        options, resume = list(run['options']), ['--resume']
        if run['start_from'] and (self.args.dry_run or
                                  newest_complete_checkpoint(work) is None):
            # a continued run's first sitting: the base's weights, from
            # iteration 0 (a later sitting resumes from its own checkpoint)
            options.append(f'load_from={run["start_from"]}')
            resume = []
        cmd = self._command('train', [run['config'], '--work-dir', work,
                                      *resume, '--cfg-options', *options])
        done = osp.isfile(run['checkpoint'])
        if not (done or self.args.dry_run):
            open_sitting(run['dir'], work)
        seconds = self._step(cmd, done, osp.join(run['dir'], 'pretrain.log'))
        if seconds is None:
            return
        if not osp.isfile(run['checkpoint']):
            raise RuntimeError(f'pretraining finished without '
                               f'{run["checkpoint"]}')
        close_sitting(run['dir'], seconds)

    def convert(self, run: Dict) -> None:
        cmd = self._command('convert', [run['checkpoint'], run['backbone']])
        self._step(cmd, osp.isfile(run['backbone']),
                   osp.join(run['dir'], 'convert.log'))

    def linear(self, run: Dict) -> None:
        a = self.args
        work = run['probe_dir']
        config = work + '.py'
        if not a.dry_run and not osp.isfile(config):
            cfg = probe_config(run['cfg'], self.probe, self.data,
                               run['backbone'], self.probe_epochs,
                               run['seed'], a.probe_batch_size,
                               a.num_workers)
            cfg.experiment_name = f'{run["label"]}_{osp.basename(work)}'
            os.makedirs(run['dir'], exist_ok=True)
            cfg.dump(config)
        last = osp.join(work, f'epoch_{self.probe_epochs}.pth')
        metrics = osp.join(work, 'metrics.json')
        log = osp.join(run['dir'], 'linear_probe.log')
        self._step(self._command('train', [config, '--work-dir', work,
                                           '--resume']),
                   osp.isfile(last) or osp.isfile(metrics), log)
        self._step(self._command('test', [
            config, last, '--work-dir', osp.join(work, 'test'), '--out',
            metrics, '--out-item', 'metrics']), osp.isfile(metrics), log)

    def fewshot(self, run: Dict) -> None:
        a = self.args
        result = osp.join(run['fewshot_dir'], 'fewshot.json')
        done = False
        if osp.isfile(result):
            s = read_json(result)['settings']
            done = s['shots'] == list(a.shots) and \
                s['seeds'] == list(range(a.fewshot_seeds))
        # the pretraining checkpoint: its embedded config (meta.cfg) is the
        # exact architecture of the run, its backbone.* keys the weights
        args = [run['checkpoint'], '--data',
                self.data['root'], '--train-split', self.data['probe_split'],
                '--test-split', self.data['val_split'], '--shots', *a.shots,
                '--seeds', a.fewshot_seeds, '--labels', run['label'],
                '--out-dir', run['fewshot_dir'], '--no-plot',
                '--feature', a.fewshot_feature]
        if a.num_workers is not None:
            args += ['--num-workers', a.num_workers]
        if a.device:
            args += ['--device', a.device]
        self._step(self._command('fewshot', args), done,
                   osp.join(run['dir'], 'fewshot.log'))

    def mask_content(self, run: Dict) -> None:
        """The final checkpoint's masks on whole images of the probe part
        (``tools/analysis_tools/analyze_mask_content.py``).  Self-Guided
        MAE's cached relevance covers only its training images: its masks
        here are generated from the final model (``generation=
        'iteration'``)."""
        out = osp.join(run['dir'], 'mask_content.json')
        args = [run['config'], run['checkpoint'], '--data',
                osp.join(self.data['root'], self.data['probe_split']),
                '--num-images', self.args.mask_content, '--seed',
                run['seed'], '--out', out]
        if str(run['cfg'].model.get('type', '')).split('.')[-1] == \
                'SelfGuidedMAE':
            args += ['--cfg-options', 'model.generation=iteration']
        self._step(self._command('mask_content', args), osp.isfile(out),
                   osp.join(run['dir'], 'mask_content.log'))
