"""The training loop of MLO-MAE: three levels, three dataloaders.

One *outer iteration* (paper eqs. 1–4, docs/mlo_mae.md):

    mae_batch   ← MAE dataloader            (unlabelled, level 1; K batches,
                                             one per unrolled MAE step)
    train_batch ← train part of the split   (labelled, level 2)
    val_batch   ← val part of the split     (labelled, level 3; only when
                                             the masker is updated)
    model.outer_step(mae_batch, train_batch, val_batch, optim_wrapper,
                     update_masker = (iteration % n == 0))

``model.outer_step`` (:class:`~mlmask_mm.models.MLOMAE`) does the level-1 MAE
steps, the level-2 head step and, every n-th iteration, the level-3 masker
step with the hypergradient; it returns the log variables, which this loop
hands to the hooks (``LoggerHook`` logs each as ``train/<name>``).  The
optimizers are the ``OptimWrapperDict(mae=, head=, masker=)`` of
``optim_wrapper`` and the schedulers ``param_scheduler=dict(mae=[...],
head=[...], masker=[...])``, stepped by mmengine's ``ParamSchedulerHook``.

The labelled data of levels 2 and 3 is a stratified, seeded split of a
labelled *training* set (:class:`~mlmask_mm.datasets.LabelledSplit`), written
to ``work_dir/mlo_split/``.  Before training the loop fails with one error if
it is missing, has fewer than 2 classes, if its two parts overlap, or if it
shares a file with an evaluation dataset (``val_dataloader``,
``test_dataloader``, ``heldout_datasets``).

Stage-II evaluation (the paper's linear-probe number, App. B.3): with a
``val_dataloader`` / ``val_evaluator`` / ``val_cfg`` in the config, mmengine's
val loop runs the level-2 head (``MLOMAE.predict``) on that held-out labelled
data every ``val_interval`` and at the end, *before* the iteration's
checkpoint is written; each result is logged, kept in the message hub
(``mlo_stage2``, saved in every later checkpoint) and the last and best are
reported when training ends.

Resume: the optimizers, schedulers and counters are in mmengine's checkpoint;
the number of batches each of the three dataloaders has delivered is kept in
the message hub (saved with it), and a resumed run skips exactly those —
whole sampler epochs without loading them — before ``before_train``, where
:class:`~mlmask_mm.engine.hooks.RNGStateHook` restores the random generators.
The masker-update phase follows from the iteration counter.
"""
import copy
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner.base_loop import BaseLoop
from torch.utils.data import DataLoader

from mlmask_mm.datasets.labelled_split import (LabelledSplit,
                                               file_content_keys, sample_keys)
from mlmask_mm.registry import DATASETS, LOOPS

POSITIONS_KEY = 'mlo_loop_positions'
STAGE2_KEY = 'mlo_stage2'  # stage-II evaluations: [dict(iter=, metric=)]
SPLIT_FOLDER = 'mlo_split'


class CyclingIterator:
    """Endless batches of a dataloader; each pass is one sampler epoch.

    ``skip(n)`` moves past ``n`` batches as if they had been read: whole
    passes only advance the sampler epoch (no image is loaded), the rest of a
    pass is read and dropped (with an ``InfiniteSampler``, all are read).
    ``delivered`` counts the batches handed out or skipped.
    """

    def __init__(self, dataloader: DataLoader) -> None:
        self.dataloader = dataloader
        self.epoch = 0
        self.delivered = 0
        self._iterator = None

    def __iter__(self):
        return self

    def _start_pass(self) -> None:
        sampler = getattr(self.dataloader, 'sampler', None)
        batch_sampler = getattr(self.dataloader, 'batch_sampler', None)
        for s in (sampler, getattr(batch_sampler, 'sampler', None)):
            if hasattr(s, 'set_epoch'):
                s.set_epoch(self.epoch)
                break
        self._iterator = iter(self.dataloader)

    def __next__(self):
        if self._iterator is None:
            self._start_pass()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self._start_pass()
            batch = next(self._iterator)
        self.delivered += 1
        return batch

    def skip(self, n: int) -> None:
        """Continue as after ``n`` batches from the start (fresh iterator)."""
        assert self.delivered == 0, 'skip() only on a fresh iterator'
        if isinstance(getattr(self.dataloader, 'sampler', None),
                      InfiniteSampler):  # one endless pass: read them
            for _ in range(n):
                next(self)
            return
        per_pass = len(self.dataloader)
        if per_pass == 0:
            raise ValueError('CyclingIterator: the dataloader is empty')
        self.epoch, rest = divmod(n, per_pass)
        self._iterator = None
        if rest:
            self._start_pass()
            for _ in range(rest):
                next(self._iterator)
        self.delivered = n


@LOOPS.register_module()
class MLOTrainLoop(BaseLoop):
    """Three-level training of :class:`~mlmask_mm.models.MLOMAE`.

    Args:
        runner: the Runner.
        dataloader: the MAE (level-1) dataloader, ``train_dataloader``.
        max_iters / max_epochs: the length, in outer iterations or in passes
            over the MAE dataloader (exactly one of them).
        masker_update_interval: n, the masker is updated at iterations
            0, n, 2n, ... (paper: n = 1; n = 5 costs 2/3 of the time).
        mae_batches_per_iter: K, the MAE batches of one outer iteration,
            one per level-1 step (default: the model's
            ``options.hypergrad.unroll_steps``; 1 = one batch reused by the K
            steps).  The MAE dataloader then reads K x ``batch_size``
            images at a time (one loader batch per outer iteration, so
            epoch-based schedules count outer iterations) and each is
            split into K batches of ``batch_size``.
        labelled_split: ``dict(dataset=<labelled dataset>, ratio=0.8,
            seed=0)``, the labelled *training* data split into the level-2
            (``train``) and level-3 (``val``) parts.
        train_split_dataloader, val_split_dataloader: dataloader configs of
            levels 2 and 3 (batch size, sampler, workers).  Without a
            ``dataset`` key they read the parts of ``labelled_split``; with
            one (any labelled dataset, e.g. another downstream task's) that
            dataset is used as it is.
        heldout_datasets: more dataset configs that levels 2 and 3 must not
            share a file with (besides ``val_dataloader``/``test_dataloader``
            of the config), e.g. the split results are reported on.
        val_begin, val_interval: as mmengine's loops (validation every
            ``val_interval`` epochs or iterations; default 1 epoch or 1000
            iterations).
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 max_iters: Optional[int] = None,
                 max_epochs: Optional[int] = None,
                 masker_update_interval: int = 1,
                 mae_batches_per_iter: Optional[int] = None,
                 labelled_split: Optional[dict] = None,
                 train_split_dataloader: Optional[dict] = None,
                 val_split_dataloader: Optional[dict] = None,
                 heldout_datasets: Sequence[dict] = (),
                 val_begin: int = 1,
                 val_interval: Optional[int] = None) -> None:
        if (max_iters is None) == (max_epochs is None):
            raise ValueError(
                'MLOTrainLoop: set exactly one of train_cfg.max_iters and '
                f'train_cfg.max_epochs, got max_iters={max_iters!r}, '
                f'max_epochs={max_epochs!r}')
        if not isinstance(masker_update_interval, int) or \
                masker_update_interval < 1:
            raise ValueError(
                'train_cfg.masker_update_interval must be a positive int, '
                f'got {masker_update_interval!r}')
        self.mae_batches_per_iter = _check_batches_per_iter(
            mae_batches_per_iter, runner.model)
        if isinstance(dataloader, dict) and self.mae_batches_per_iter > 1:
            # one loader batch = the K MAE batches of one outer iteration
            dataloader = copy.deepcopy(dataloader)
            dataloader['batch_size'] = \
                dataloader['batch_size'] * self.mae_batches_per_iter
        super().__init__(runner, dataloader)
        self.by_epoch = max_epochs is not None
        if self.by_epoch:
            self._max_epochs = int(max_epochs)
            self._max_iters = self._max_epochs * len(self.dataloader)
        else:
            self._max_epochs = 1  # one big epoch, as IterBasedTrainLoop
            self._max_iters = int(max_iters)
        self._epoch = 0
        self._iter = 0
        self.masker_update_interval = masker_update_interval
        self.val_begin = val_begin
        # mmengine's defaults: every epoch, or every 1000 iterations
        self.val_interval = val_interval or (1 if self.by_epoch else 1000)
        self.stop_training = False  # EarlyStoppingHook sets it
        if hasattr(self.dataloader.dataset, 'metainfo'):
            self.runner.visualizer.dataset_meta = \
                self.dataloader.dataset.metainfo

        self.train_split_loader, self.val_split_loader = \
            self._build_labelled_loaders(labelled_split,
                                         train_split_dataloader,
                                         val_split_dataloader)
        self._check_labelled_data(heldout_datasets)
        self._record_split()
        self.mae_batches = CyclingIterator(self.dataloader)
        self.train_batches = CyclingIterator(self.train_split_loader)
        self.val_batches = CyclingIterator(self.val_split_loader)
        self._resume_pass = None  # epoch-based resume inside an epoch

    # --------------------------------------------------------- properties
    @property
    def max_epochs(self) -> int:
        return self._max_epochs

    @property
    def max_iters(self) -> int:
        return self._max_iters

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def iter(self) -> int:
        return self._iter

    # ------------------------------------------------------- construction
    def _build_labelled_loaders(self, split_cfg, train_cfg, val_cfg):
        if train_cfg is None or val_cfg is None:
            raise ValueError(
                'MLOTrainLoop: train_cfg.train_split_dataloader and '
                'train_cfg.val_split_dataloader are required (the labelled '
                'data of levels 2 and 3), got '
                f'train_split_dataloader={train_cfg!r}, '
                f'val_split_dataloader={val_cfg!r}')
        train_cfg, val_cfg = copy.deepcopy(train_cfg), copy.deepcopy(val_cfg)
        if 'dataset' not in train_cfg or 'dataset' not in val_cfg:
            if not split_cfg or not split_cfg.get('dataset'):
                raise ValueError(
                    'MLOTrainLoop: the labelled split is missing: set '
                    'train_cfg.labelled_split=dict(dataset=<labelled '
                    'training dataset>, ratio=0.8, seed=0) (or a dataset in '
                    'both train_split_dataloader and val_split_dataloader), '
                    f'got labelled_split={split_cfg!r}')
            split_cfg = dict(split_cfg)
            dataset = split_cfg.pop('dataset')
            with DefaultScope.overwrite_default_scope('mlmask_mm'):
                if isinstance(dataset, dict):
                    dataset = DATASETS.build(dataset)
            # one labelled dataset, read once, two complementary parts
            for cfg, part in ((train_cfg, 'train'), (val_cfg, 'val')):
                if 'dataset' not in cfg:
                    cfg['dataset'] = LabelledSplit(dataset, part=part,
                                                   **split_cfg)
        build = dict(seed=self.runner.seed, diff_rank_seed=self.runner.
                     _randomness_cfg.get('diff_rank_seed', False))
        return (self.runner.build_dataloader(train_cfg, **build),
                self.runner.build_dataloader(val_cfg, **build))

    def _check_labelled_data(self, heldout_datasets) -> None:
        """Disjoint parts; no sample shared with an evaluation dataset.

        Samples are compared by file path, or by pixel content for
        in-memory datasets (:func:`~mlmask_mm.datasets.labelled_split.
        sample_keys`); files against in-memory images by the files' decoded
        pixels (:func:`~mlmask_mm.datasets.labelled_split.
        file_content_keys`); a dataset that can be compared neither way
        stops training with an error (never a silent pass).
        """
        for name in ('train', 'val'):
            if len(getattr(self, f'{name}_split_loader').dataset) == 0:
                raise ValueError(f'MLOTrainLoop: the {name} part of the '
                                 'labelled split is empty')
        parts = {
            name: sample_keys(
                getattr(self, f'{name}_split_loader').dataset,
                f'train_cfg.{name}_split_dataloader.dataset')
            for name in ('train', 'val')
        }
        a, b = (self.train_split_loader.dataset,
                self.val_split_loader.dataset)
        same_split = (isinstance(a, LabelledSplit)
                      and isinstance(b, LabelledSplit)
                      and a.dataset is b.dataset)
        if not same_split:  # (one split's parts are disjoint by index)
            shared = parts['train'] & parts['val']
            if shared:
                raise ValueError(
                    f'MLOTrainLoop: the level-2 (train) and level-3 (val) '
                    f'parts of the labelled data share {len(shared)} '
                    f'sample(s), e.g. {_show(sorted(shared)[0])}: use the '
                    'two parts of one LabelledSplit (same ratio and seed)')
        by_content = {}  # the parts' files decoded, read once if needed
        for setting, dataset in self._evaluation_datasets(heldout_datasets):
            keys = sample_keys(dataset, setting)
            kinds = {k for k, _ in keys}
            for name, part in (('val', parts['val']),
                               ('train', parts['train'])):
                part_kinds = {k for k, _ in part}
                if kinds != part_kinds and 'content' in kinds | part_kinds:
                    # files against in-memory images (e.g. the split's files
                    # against mmpretrain's CIFAR10 test set): compare pixels
                    if part_kinds != {'content'}:
                        if name not in by_content:
                            by_content[name] = file_content_keys(
                                part, f'the {name} part of the split')
                        part = by_content[name]
                    keys = file_content_keys(keys, setting)
                    kinds = {'content'}
                if kinds != {k for k, _ in part}:
                    raise ValueError(
                        f'MLOTrainLoop: cannot verify that the {name} part '
                        f'of the labelled split shares no image with {setting}'
                        f': one is identified by {sorted(kinds)}, the other '
                        f'by {sorted({k for k, _ in part})}')
                shared = keys & part
                if shared:
                    level = 3 if name == 'val' else 2
                    raise ValueError(
                        f'MLOTrainLoop: the level-{level} ({name}) part of '
                        f'the labelled split shares {len(shared)} sample(s) '
                        f'with the evaluation dataset {setting}, e.g. '
                        f'{_show(sorted(shared)[0])}: levels 2 and 3 must '
                        'only see training images (split the training set, '
                        'e.g. train_cfg.labelled_split)')

    def _evaluation_datasets(self, heldout_datasets):
        """(setting name, dataset) of every dataset results come from."""
        candidates = [(f'train_cfg.heldout_datasets[{i}]', cfg)
                      for i, cfg in enumerate(heldout_datasets)]
        for name in ('val_dataloader', 'test_dataloader'):
            loader = getattr(self.runner, f'_{name}', None)
            if isinstance(loader, DataLoader):
                candidates.append((name, loader.dataset))
            elif isinstance(loader, dict) and loader.get('dataset'):
                candidates.append((f'{name}.dataset', loader['dataset']))
        for setting, dataset in candidates:
            if isinstance(dataset, dict):
                with DefaultScope.overwrite_default_scope('mlmask_mm'):
                    dataset = DATASETS.build(copy.deepcopy(dataset))
            yield setting, dataset

    def _record_split(self) -> None:
        dataset = self.train_split_loader.dataset
        if isinstance(dataset, LabelledSplit) and get_rank() == 0:
            folder = dataset.save(osp.join(self.runner.work_dir,
                                           SPLIT_FOLDER))
            print_log(
                f'MLO-MAE labelled split (ratio={dataset.ratio}, '
                f'seed={dataset.seed}): {len(dataset)} level-2 and '
                f'{len(self.val_split_loader.dataset)} level-3 samples, '
                f'file lists in {folder}', logger='current')

    # ------------------------------------------------------------ running
    def run(self) -> torch.nn.Module:
        self._skip_consumed_batches()  # before RNGStateHook restores
        self.runner.call_hook('before_train')
        if self.by_epoch:
            while self._epoch < self._max_epochs and not self.stop_training:
                self.run_epoch()
        else:
            self.runner.call_hook('before_train_epoch')
            while self._iter < self._max_iters and not self.stop_training:
                self.run_iter(self._iter, next(self.mae_batches))
            self.runner.call_hook('after_train_epoch')
        self._report_stage2()
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> None:
        """One pass over the MAE dataloader."""
        self.runner.call_hook('before_train_epoch')
        start = self._iter - self._epoch * len(self.dataloader)
        batches = self._resume_pass or iter(self.dataloader)
        self._resume_pass = None
        for idx, mae_batch in enumerate(batches, start=start):
            self.run_iter(idx, mae_batch)
            if self.stop_training:
                break
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx: int, mae_batch: dict) -> None:
        """One outer iteration: the three levels (``model.outer_step``)."""
        update_masker = self._iter % self.masker_update_interval == 0
        train_batch = next(self.train_batches)
        val_batch = next(self.val_batches) if update_masker else None
        self.runner.call_hook(
            'before_train_iter', batch_idx=idx, data_batch=mae_batch)
        model = self.runner.model
        model.train()
        module = model.module if is_model_wrapper(model) else model
        outputs = module.outer_step(
            split_batch(mae_batch, self.mae_batches_per_iter),
            train_batch, val_batch,
            optim_wrapper=self.runner.optim_wrapper,
            update_masker=update_masker)
        # before after_train_iter, where CheckpointHook saves
        self._save_positions(self._iter + 1)
        self._stage2_if_due(idx)
        self.runner.call_hook(
            'after_train_iter', batch_idx=idx, data_batch=mae_batch,
            outputs=outputs)
        self._iter += 1

    def _val_due(self, count: int, last: int) -> bool:
        return (self.runner.val_loop is not None and count >= self.val_begin
                and (count % self.val_interval == 0 or count == last))

    # ------------------------------------------------- stage-II evaluation
    def _stage2_if_due(self, idx: int) -> None:
        """Stage-II evaluation (mmengine's val loop: the level-2 head on the
        held-out labelled ``val_dataloader``) when due, *before* the
        iteration's checkpoint is written, so that the checkpoint holds its
        result (message hub ``mlo_stage2``).  The counters read by the
        hooks are those of the finished iteration / epoch, as after
        mmengine's own loops."""
        if self.by_epoch:
            due = idx + 1 == len(self.dataloader) and self._val_due(
                self._epoch + 1, self._max_epochs)
        else:
            due = self._val_due(self._iter + 1, self._max_iters)
        if not due:
            return
        epoch_end = self.by_epoch
        self._iter += 1
        self._epoch += int(epoch_end)
        try:
            metrics = self.runner.val_loop.run()
        finally:
            self._iter -= 1
            self._epoch -= int(epoch_end)
        history = list(self.runner.message_hub.get_info(STAGE2_KEY) or [])
        history.append(dict(iter=self._iter + 1,
                            **{k: float(v) for k, v in metrics.items()}))
        self.runner.message_hub.update_info(STAGE2_KEY, history)

    def _report_stage2(self) -> None:
        """The stage-II numbers at the end of training: the last evaluation
        (the paper's linear-probe figure) and, for reference, the best."""
        history = self.runner.message_hub.get_info(STAGE2_KEY)
        if not history:
            return
        last = history[-1]
        keys = [k for k in last if k != 'iter']
        lines = [f'MLO-MAE stage-II evaluation (the level-2 head on the '
                 f'held-out val_dataloader, {len(history)} evaluation(s)):',
                 '  last, iteration {}: {}'.format(
                     last['iter'], ', '.join(f'{k} {last[k]:.2f}'
                                             for k in keys))]
        if keys:
            best = max(history, key=lambda h: h[keys[0]])
            lines.append(
                f'  best {keys[0]} {best[keys[0]]:.2f} at iteration '
                f'{best["iter"]} (for reference; a figure selected on the '
                'evaluation data is not a test result)')
        print_log('\n'.join(lines), logger='current')

    # ------------------------------------------------------------- resume
    def _save_positions(self, iteration: int) -> None:
        """Batches delivered by the labelled loaders after ``iteration``
        outer iterations (saved in checkpoints through the message hub)."""
        self.runner.message_hub.update_info(
            POSITIONS_KEY,
            dict(iter=iteration,
                 train_split=self.train_batches.delivered,
                 val_split=self.val_batches.delivered))

    def _skip_consumed_batches(self) -> None:
        if self._iter == 0:
            return
        saved = self.runner.message_hub.get_info(POSITIONS_KEY)
        if saved is None or saved.get('iter') != self._iter:
            raise RuntimeError(
                f'MLOTrainLoop: resuming at iteration {self._iter} but the '
                'checkpoint does not record the positions of the labelled '
                f'dataloaders ({POSITIONS_KEY}={saved!r}); it was not saved '
                'by MLOTrainLoop')
        print_log(
            f'MLOTrainLoop: resuming at iteration {self._iter}: skipping '
            f'{saved["train_split"]} level-2 and {saved["val_split"]} level-3'
            ' batches already trained', logger='current',
            level=logging.INFO)
        self.train_batches.skip(saved['train_split'])
        self.val_batches.skip(saved['val_split'])
        if not self.by_epoch:
            self.mae_batches.skip(self._iter)
            return
        # resumed inside an epoch (an iteration-based checkpoint)
        done = self._iter - self._epoch * len(self.dataloader)
        if done > 0:
            sampler = getattr(self.dataloader, 'sampler', None)
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(self._epoch)
            self._resume_pass = iter(self.dataloader)
            for _ in range(done):
                next(self._resume_pass)


def split_batch(batch: dict, parts: int) -> Union[dict, List[dict]]:
    """A collated batch of N samples as ``parts`` batches of ⌈N/parts⌉
    (the last ones smaller); the batch itself when ``parts`` is 1 or N is
    smaller than ``parts`` (then reused by every step)."""
    n = len(batch['data_samples'])
    if parts == 1 or n < parts:
        return batch
    size = -(-n // parts)
    out = []
    for start in range(0, n, size):
        piece = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) or (
                    isinstance(value, (list, tuple)) and len(value) == n):
                piece[key] = value[start:start + size]
            elif isinstance(value, (list, tuple)) and all(
                    isinstance(v, torch.Tensor) and len(v) == n
                    for v in value):  # several views of each image
                piece[key] = [v[start:start + size] for v in value]
            else:
                raise ValueError(f'split_batch: cannot split {key!r} of a '
                                 f'batch of {n} samples into {parts}')
        out.append(piece)
    if len(out) != parts:  # e.g. n = 5, parts = 4: sizes 2, 2, 1
        return batch
    return out


def _check_batches_per_iter(value, model) -> int:
    if value is None:
        module = model.module if is_model_wrapper(model) else model
        hypergrad = getattr(getattr(module, 'options', None), 'hypergrad',
                            None)
        value = 1 if hypergrad is None else hypergrad.unroll_steps
    if not isinstance(value, int) or value < 1:
        raise ValueError('train_cfg.mae_batches_per_iter must be a positive '
                         f'int or None (the model\'s unroll steps), got '
                         f'{value!r}')
    return value


def _show(key) -> str:
    kind, value = key
    return repr(value) if kind == 'path' else f'an image (sha1 {value[:12]})'


__all__: List[str] = ['MLOTrainLoop', 'CyclingIterator']
