"""Stop on SIGTERM / SIGUSR1 (preemption, time limit) with a checkpoint.

The signal only sets a flag; at the end of the iteration every rank agrees
on it (one ``all_reduce``), the state of that iteration is saved through the
checkpoint hook's (atomic) backend, ``last_checkpoint`` is pointed at it and
the run ends with :data:`EXIT_CODE`.  The next start of the same command in
the same work directory resumes from it.  See docs/fail_safe.md.
"""
import os
import os.path as osp
import signal
import subprocess
from typing import Dict, Optional, Sequence

import torch
from mmengine.dist import all_reduce, barrier, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from mlmask_mm.registry import HOOKS
from mlmask_mm.utils.checkpoint_files import atomic_write
from mlmask_mm.utils.checkpoint_schedule import checkpoint_due
from mlmask_mm.utils.rng_state import get_rng_state, set_rng_state

#: exit status of a run stopped by a signal after saving its checkpoint
#: (sysexits' EX_TEMPFAIL: "temporary failure, try again")
EXIT_CODE = 75
#: written to the work directory by a stop; the next ``tools/train.py`` of
#: that work directory resumes (as with ``--resume``) and removes it
MARKER = 'preempted_checkpoint'


class TrainingStopped(SystemExit):
    """A signal stopped training after its checkpoint was saved.

    ``code`` is :data:`EXIT_CODE`; ``checkpoint`` the file saved.
    """

    def __init__(self, message: str, checkpoint: Optional[str]) -> None:
        super().__init__(EXIT_CODE)
        self.message, self.checkpoint = message, checkpoint

    def __str__(self) -> str:
        return self.message


# ------------------------------------------------------- process signals
class _Signals:
    """The process's handlers: one per signal, installed once, chaining the
    handler found before (e.g. submitit's).  While no hook is active a
    signal acts as it did before ours was installed."""

    def __init__(self) -> None:
        self.pid: Optional[int] = None
        self.previous: Dict[int, object] = {}
        self.active: Optional['PreemptionHook'] = None
        self.received: list = []  # signal numbers, since activation

    def install(self, signums: Sequence[int]) -> bool:
        if self.pid != os.getpid():  # a forked child: start over
            self.previous, self.received, self.active = {}, [], None
            self.pid = os.getpid()
        try:
            for signum in signums:
                current = signal.getsignal(signum)
                if current is _handle:
                    continue
                self.previous[signum] = current
                signal.signal(signum, _handle)
        except ValueError:  # not the main thread
            return False
        return True

    def uninstall(self) -> None:
        if self.pid != os.getpid():
            return
        for signum, previous in list(self.previous.items()):
            if signal.getsignal(signum) is _handle:
                signal.signal(signum, previous if previous is not None
                              else signal.SIG_DFL)
            del self.previous[signum]


_SIGNALS = _Signals()


def _handle(signum, frame) -> None:
    if os.getpid() != _SIGNALS.pid:
        # a dataloader worker forked from the trainer (slurm signals every
        # process of the step): the trainer saves, the worker carries on
        return
    previous = _SIGNALS.previous.get(signum, signal.SIG_DFL)
    if _SIGNALS.active is not None:
        _SIGNALS.received.append(signum)
        if callable(previous):  # chain, e.g. submitit's handler
            previous(signum, frame)
        return
    # no training in progress: what the signal did before
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def stop_requested() -> bool:
    """Whether this process received a stop signal during training."""
    return _SIGNALS.active is not None and bool(_SIGNALS.received)


def _device(runner) -> torch.device:
    for p in runner.model.parameters():
        return p.device
    return torch.device('cpu')


def _agree(flag: bool, device) -> bool:
    """True on every rank if it is True on any (a collective)."""
    _, world = get_dist_info()
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    all_reduce(t, op='max')
    return bool(t.item())


def _val_due(runner, done: int, interval: int, last: int) -> bool:
    """Whether mmengine's train loop validates after ``done`` iterations
    (epochs), as its ``run`` decides."""
    loop = runner.train_loop
    return runner.val_loop is not None and done >= loop.val_begin and (
        done % interval == 0 or done == last)


def stop_agreed(runner) -> bool:
    """For long phases (Self-Guided's generation pass): whether any rank
    received a stop signal.  A collective when a :class:`PreemptionHook` is
    active and several processes run, so every rank calls it equally often;
    False at once without an active hook."""
    if _SIGNALS.active is None:
        return False
    return _agree(stop_requested(), _device(runner))


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Save and stop on SIGTERM or SIGUSR1; requeue under slurm on request.

    A signal received during training sets a flag (and chains the handler
    found before this one).  At the end of the iteration the ranks agree on
    it (one ``all_reduce`` of a flag per iteration); if any rank got it,
    every rank stops there: the checkpoint of that iteration is written to
    the ``CheckpointHook``'s ``out_dir`` through its backend (unless that
    hook saved it already), ``last_checkpoint`` names it, and the run
    raises :class:`TrainingStopped` (exit status :data:`EXIT_CODE` = 75).
    The next ``tools/train.py`` of the work directory resumes from it.
    Dataloader workers forked from the trainer ignore the signals; signals
    during the save only set the flag again.

    ``default_hooks.preemption`` in ``configs/_base_/default_runtime.py``.

    Args:
        enabled (bool): False leaves the signals alone.  Defaults to True.
        signals (Sequence[str]): the signals that stop training.  Defaults
            to ``('SIGTERM', 'SIGUSR1')`` (slurm: time limit / preemption,
            and ``--signal=USR1@<seconds>``).
        requeue (bool): after saving, rank 0 runs ``scontrol requeue
            $SLURM_JOB_ID`` (needs ``#SBATCH --requeue``).  Defaults to
            False.
    """

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) of an iteration

    def __init__(self, enabled: bool = True,
                 signals: Sequence[str] = ('SIGTERM', 'SIGUSR1'),
                 requeue: bool = False) -> None:
        if not isinstance(enabled, bool) or not isinstance(requeue, bool):
            raise ValueError(
                'PreemptionHook: enabled and requeue must be True or False, '
                f'got enabled={enabled!r}, requeue={requeue!r}')
        if isinstance(signals, str):
            signals = (signals, )
        self.signums = []
        for name in signals:
            signum = getattr(signal, str(name), None)
            if not str(name).startswith('SIG') or \
                    not isinstance(signum, signal.Signals) or \
                    signum in (signal.SIGKILL, signal.SIGSTOP):
                raise ValueError(
                    f'PreemptionHook: signals={tuple(signals)!r}: {name!r} '
                    'is not a signal that can be handled (e.g. SIGTERM, '
                    'SIGUSR1)')
            self.signums.append(signum)
        self.enabled, self.requeue = enabled, requeue
        self._pending = False  # agreed; stop after the validation / epoch
        if enabled:
            # now, before the train loop forks dataloader workers: they
            # inherit the handler, which ignores signals in them
            _SIGNALS.install(self.signums)

    # -------------------------------------------------------- lifecycle
    def before_train(self, runner) -> None:
        # active during training only: validation / test runs and the set-up
        # before training keep the signals' previous behaviour
        if not self.enabled:
            return
        # again: another runner's hook may have uninstalled it since
        if not _SIGNALS.install(self.signums):
            runner.logger.warning(
                'PreemptionHook: not on the main thread, signals cannot be '
                'handled: a SIGTERM / SIGUSR1 ends the run without a '
                'checkpoint')
            return
        _SIGNALS.active, _SIGNALS.received = self, []
        self._pending = False
        if runner.rank == 0:  # this run consumed the marker
            marker = osp.join(runner.work_dir, MARKER)
            if osp.exists(marker):
                os.remove(marker)
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop):
            done = loop.iter - loop.epoch * len(loop.dataloader)
            if 0 < done < len(loop.dataloader):
                loop.dataloader = _ResumeInsideEpoch(loop, done)

    def after_train(self, runner) -> None:
        if _SIGNALS.active is self:
            _SIGNALS.active, _SIGNALS.received = None, []
            _SIGNALS.uninstall()

    after_run = after_train

    # --------------------------------------------------------- stopping
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if _SIGNALS.active is not self or \
                not _agree(stop_requested(), _device(runner)):
            return
        loop, done = runner.train_loop, runner.iter + 1
        if done >= runner.max_iters:
            runner.logger.warning('PreemptionHook: stop signal at the last '
                                  'iteration: finishing the run')
            _SIGNALS.received = []
        elif isinstance(loop, EpochBasedTrainLoop) and \
                done % len(loop.dataloader) == 0:
            self._pending = True  # the epoch's end: after_train_epoch
        elif isinstance(loop, IterBasedTrainLoop) and _val_due(
                runner, done, loop.val_interval, runner.max_iters):
            self._pending = True  # after the validation that follows
        else:
            self._stop(runner, 'iter')

    def after_train_epoch(self, runner) -> None:
        # e.g. a signal during Self-Guided's check after an epoch; the
        # iteration loops call this only once, at the end
        if _SIGNALS.active is not self or \
                not isinstance(runner.train_loop, EpochBasedTrainLoop):
            return
        if not (self._pending or
                _agree(stop_requested(), _device(runner))):
            return
        done = runner.epoch + 1
        if done >= runner.max_epochs:
            runner.logger.warning('PreemptionHook: stop signal in the last '
                                  'epoch: finishing the run')
            _SIGNALS.received, self._pending = [], False
        elif _val_due(runner, done, runner.train_loop.val_interval,
                      runner.max_epochs):
            self._pending = True
        else:
            self._stop(runner, 'epoch')

    def after_val_epoch(self, runner, metrics=None) -> None:
        # mmengine's loops validate after an iteration's / epoch's hooks; a
        # validation is finished, then training stops (MLO-MAE's stage-II
        # evaluation runs inside its iteration, which stops at its end)
        if _SIGNALS.active is not self or not isinstance(
                runner.train_loop, (IterBasedTrainLoop, EpochBasedTrainLoop)):
            return
        loop = runner.train_loop
        if loop.iter >= loop.max_iters:
            return  # the final validation: training is over
        if self._pending or _agree(stop_requested(), _device(runner)):
            self._stop(runner, 'val')

    def _stop(self, runner, at: str) -> None:
        """Save the state of this point (``at``: after an ``'iter'``ation,
        an ``'epoch'`` or a ``'val'``idation), then raise."""
        names = sorted({signal.Signals(s).name for s in _SIGNALS.received})
        got = (f'{"/".join(names)} received' if names else
               'a stop signal received by another process')
        epoch_loop = isinstance(runner.train_loop, EpochBasedTrainLoop)
        meta, saved = None, False
        if at == 'iter':
            where, by_epoch = f'iteration {runner.iter + 1}', False
            name = f'iter_{runner.iter + 1}.pth'
            saved = checkpoint_due(runner, False)
        elif at == 'epoch':
            where = f'epoch {runner.epoch + 1} (iteration {runner.iter})'
            by_epoch, name = True, f'epoch_{runner.epoch + 1}.pth'
            saved = checkpoint_due(runner, True)
        else:  # the counters are those after the validated iteration/epoch
            by_epoch = epoch_loop
            unit, step = ('epoch', runner.epoch) if epoch_loop else \
                ('iteration', runner.iter)
            where = f'the validation after {unit} {step}'
            name = f'{"epoch" if epoch_loop else "iter"}_{step}.pth'
            meta = dict(epoch=runner.epoch, iter=runner.iter)
        runner.logger.warning(
            f'PreemptionHook: {got}; stopping after {where}, saving')
        if saved:  # CheckpointHook has just written it
            path = runner.message_hub.get_info('last_ckpt')
        else:
            path = self._save(runner, name, by_epoch, meta)
        barrier()  # the file is complete before any rank leaves
        if runner.rank == 0:
            atomic_write(str(path), osp.join(runner.work_dir, MARKER), 'w')
            if self.requeue:
                self._requeue(runner)
        message = (
            f'PreemptionHook: training stopped after {where} ({got}); '
            f'checkpoint {path}; exit status {EXIT_CODE}. Run the same '
            'command again (same work directory) to resume from it')
        runner.logger.warning(message)
        raise TrainingStopped(message, path)

    def _save(self, runner, name: str, by_epoch: bool, meta) -> str:
        from mlmask_mm.engine.hooks.rng_state_hook import RNGStateHook
        for hook in runner.hooks:  # every rank's generators (a collective)
            if isinstance(hook, RNGStateHook):
                hook.gather(runner)
        ckpt_hook = next((h for h in runner.hooks
                          if isinstance(h, CheckpointHook)), None)
        if ckpt_hook is not None:
            out_dir = ckpt_hook.out_dir
            backend_args = ckpt_hook.backend_args
            kwargs = dict(save_optimizer=ckpt_hook.save_optimizer,
                          save_param_scheduler=ckpt_hook.save_param_scheduler,
                          **ckpt_hook.args)
        else:
            out_dir, kwargs = runner.work_dir, {}
            backend_args = dict(backend='local_atomic')
        path = osp.join(out_dir, name) if '://' not in str(out_dir) \
            else f'{out_dir}/{name}'
        runner.save_checkpoint(out_dir, name, meta=meta, by_epoch=by_epoch,
                               backend_args=backend_args, **kwargs)
        if runner.rank == 0:
            runner.message_hub.update_info('last_ckpt', path)
            # after the file is complete (it was renamed into place)
            atomic_write(path, osp.join(runner.work_dir, 'last_checkpoint'),
                         'w')
        return path

    def _requeue(self, runner) -> None:
        job = os.environ.get('SLURM_JOB_ID')
        if not job:
            runner.logger.warning(
                'PreemptionHook(requeue=True): SLURM_JOB_ID is not set, not '
                'requeueing')
            return
        try:
            proc = subprocess.run(['scontrol', 'requeue', job],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            runner.logger.error(f'PreemptionHook: scontrol requeue {job} '
                                f'failed: {e}')
            return
        if proc.returncode != 0:
            runner.logger.error(
                f'PreemptionHook: scontrol requeue {job} failed (exit '
                f'{proc.returncode}): {proc.stderr.strip()}')
        else:
            runner.logger.warning(f'PreemptionHook: job {job} requeued')


class _ResumeInsideEpoch:
    """The train dataloader of an epoch-based loop resumed in the middle of
    an epoch: its first pass starts after the ``done`` batches already
    trained (read and dropped, so the sampler order and the data pipeline's
    random numbers are those of the uninterrupted run; the main process's
    generators are left as ``RNGStateHook`` restored them)."""

    def __init__(self, loop, done: int) -> None:
        self._loop, self._inner, self._done = loop, loop.dataloader, done

    def __iter__(self):
        self._loop.dataloader = self._inner  # later epochs: whole passes
        state = get_rng_state()
        iterator = iter(self._inner)
        for _ in range(self._done):
            next(iterator)
        set_rng_state(state)
        return iterator

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)
