"""Stopping on SIGTERM / SIGUSR1 with a checkpoint, resuming bit-exact, a
full disk (PreemptionHook, docs/fail_safe.md).

CPU, the tiny configs of the method tests (2-block ViTs, 16 px images).
Signals are sent by the process to itself at a chosen iteration (a test
hook), or from the parent to a training subprocess and its workers.
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time
import types

import pytest
import torch
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop, Runner
from mmengine.runner.base_loop import BaseLoop

from conftest import (REPO, differing_tensors, make_image_folder, tensors,
                      tiny_config)

# processes, Runners or mmseg/mmdet training: minutes in all (make test-quick
# leaves them out)
pytestmark = pytest.mark.slow
from mlmask_mm.engine.config_checks import prepare_config
from mlmask_mm.engine.hooks import preemption_hook
from mlmask_mm.engine.hooks.preemption_hook import (EXIT_CODE, MARKER,
                                                    PreemptionHook,
                                                    TrainingStopped)
from mlmask_mm.registry import LOOPS
from mlmask_mm.utils import checkpoint_files
from mlmask_mm.utils.checkpoint_files import (DiskFullError,
                                              checkpoint_problem,
                                              resolve_resume)

N = 5  # iterations; regular checkpoints every 2 (and the last)
_runs = iter(range(10**6))


@pytest.fixture(autouse=True)
def fast_config_text(monkeypatch):
    """The config text saved in checkpoints, without yapf (~1.5 s)."""
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: repr(self._cfg_dict)))


@pytest.fixture(autouse=True)
def signals_restored():
    """Each test leaves the process's handlers as it found them."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM,
                                               signal.SIGUSR1)}
    yield
    preemption_hook._SIGNALS.active = None
    preemption_hook._SIGNALS.uninstall()
    for s, handler in before.items():
        signal.signal(s, handler)


class SignalAt(Hook):
    """``os.kill(own pid, signum)`` at the start of iteration ``at``
    (1-based) on ``rank`` (every rank: None)."""
    priority = 'HIGHEST'

    def __init__(self, at, signum, rank=None):
        self.at, self.signum, self.rank = at, signum, rank

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at and self.rank in (None, get_rank()):
            os.kill(os.getpid(), self.signum)


def build(cfg, hooks=()):
    cfg.experiment_name = f'preemption_{next(_runs)}'
    runner = Runner.from_cfg(prepare_config(cfg))
    for hook in hooks:
        runner.register_hook(hook)
    return runner


def assert_same_tensors(expected_file, got_file, min_state=10):
    expected = tensors(torch.load(expected_file, weights_only=True))
    got = tensors(torch.load(got_file, weights_only=True))
    different = differing_tensors(expected, got)
    assert not different, f'resumed run differs in {different[:10]}'
    assert len([k for k in expected if k.startswith('/state_dict/')]) \
        >= min_state
    assert any(k.startswith('/optimizer/') for k in expected)
    assert any(k.startswith('/rng_state/') for k in expected)
    return expected


def method_config(method, tmp_path, work):
    """Each method's tiny config, N iterations, checkpoints every 2."""
    root = str(tmp_path / 'images')
    if not osp.isdir(root):
        make_image_folder(root, per_class=4)  # 8 images: 2 batches/epoch
    work = str(tmp_path / work)
    if method.startswith('mlo_mae'):
        from test_mlo_loop import IMG, mlo_config
        labelled = str(tmp_path / 'labelled')
        heldout = None
        if not osp.isdir(labelled):
            make_image_folder(labelled, per_class=5, size=IMG, seed=1)
        if method == 'mlo_mae_stage2':  # evaluated after iterations 2, 4, 5
            heldout = str(tmp_path / 'heldout')
            if not osp.isdir(heldout):
                make_image_folder(heldout, per_class=3, size=IMG, seed=9)
        cfg = mlo_config(root, labelled, work, max_iters=N, n=2,
                         stage2_root=heldout)
    elif method == 'cl_mae':
        from test_cl_mae import cl_config
        cfg = cl_config(root, work, max_iters=N)
    elif method.startswith('sg_mae'):
        from test_self_guided_mae import sg_config
        start = 4 if method == 'sg_mae_before' else 2
        cfg = sg_config(root, work, max_iters=N,
                        switch=dict(criterion='fixed', start=start))
        cfg.custom_hooks = [dict(type='SelfGuidedHook', batch_size=2)]
    else:
        cfg = tiny_config(root, work, max_iters=N)
    by_epoch = method == 'mae_epochs'
    if by_epoch:  # 3 epochs of 2 iterations; stopped inside the second
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3)
        cfg.param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True,
                                    begin=0, end=3, eta_min=1e-5,
                                    convert_to_iter_based=True)]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1 if by_epoch else 2,
        by_epoch=by_epoch, max_keep_ckpts=3,
        backend_args=dict(backend='local_atomic'))
    return cfg


def resume_config(method, tmp_path, work):
    """What tools/train.py makes of the same command after a stop."""
    cfg = method_config(method, tmp_path, work)
    assert osp.isfile(osp.join(cfg.work_dir, MARKER))
    cfg.resume, cfg.load_from = True, None
    resolve_resume(cfg)
    return cfg


def final(method):
    return 'epoch_3.pth' if method == 'mae_epochs' else f'iter_{N}.pth'


# ================================================ stop, save, resume exact
@pytest.mark.parametrize('method,signame,at', [
    ('mae', 'SIGTERM', 3),
    ('mae_epochs', 'SIGUSR1', 3),     # inside epoch 2 of an epoch loop
    ('cl_mae', 'SIGUSR1', 3),
    ('sg_mae_before', 'SIGTERM', 3),  # switch at 4: after the resume
    ('sg_mae_after', 'SIGUSR1', 3),   # switch and generation at 2
    ('mlo_mae', 'SIGTERM', 4),        # a regular checkpoint's iteration
])
def test_signal_stops_with_a_checkpoint_and_resume_is_bit_exact(
        tmp_path, monkeypatch, method, signame, at):
    full = build(method_config(method, tmp_path, 'full'))
    full.train()

    # under slurm with requeue=True: scontrol requeue, once it is saved
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    record = tmp_path / 'scontrol.txt'
    ckpt = tmp_path / 'stopped' / f'iter_{at}.pth'
    (bin_dir / 'scontrol').write_text(
        f'#!/bin/sh\necho "$@ $(test -f {ckpt} && echo saved)" '
        f'>> {record}\n')
    (bin_dir / 'scontrol').chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setenv('SLURM_JOB_ID', '4242')

    cfg = method_config(method, tmp_path, 'stopped')
    cfg.default_hooks.preemption = dict(type='mlmask_mm.PreemptionHook',
                                        requeue=True)
    stopped = build(cfg, [SignalAt(at, getattr(signal, signame))])
    with pytest.raises(TrainingStopped) as stop:
        stopped.train()
    assert stop.value.code == EXIT_CODE == 75
    assert stopped.iter == at - 1  # stopped at the end of iteration `at`
    assert f'after iteration {at}' in str(stop.value)
    assert f'{signame} received' in str(stop.value)
    assert checkpoint_problem(str(ckpt)) is None
    assert stop.value.checkpoint == str(ckpt)
    assert not osp.exists(tmp_path / 'stopped' / f'iter_{at + 1}.pth')
    with open(tmp_path / 'stopped' / 'last_checkpoint') as f:
        assert f.read() == str(ckpt)
    saved = torch.load(str(ckpt), weights_only=True)
    assert saved['meta']['iter'] == at
    assert record.read_text() == 'requeue 4242 saved\n'
    if method == 'sg_mae_after':
        assert int(saved['state_dict']['sg_state.switch'][0]) == 2
        assert bool(saved['state_dict']['sg_state.cache_filled'].all())

    cfg = resume_config(method, tmp_path, 'stopped')
    assert cfg.load_from == str(ckpt)
    resumed = build(cfg)
    resumed.train()
    assert resumed.iter == full.iter == (6 if method == 'mae_epochs' else N)
    assert not osp.exists(tmp_path / 'stopped' / MARKER)  # consumed
    assert_same_tensors(str(tmp_path / 'full' / final(method)),
                        str(tmp_path / 'stopped' / final(method)))


# ===================================================== long phases, saving
@LOOPS.register_module(force=True)
class RandomValLoopForTest(BaseLoop):
    """A validation as the train loops see it: its hooks, a random draw
    (as ``iter(DataLoader)`` makes), and a signal in it after the
    iteration (epoch) ``signal_after`` if asked."""

    def __init__(self, runner, dataloader, evaluator, signal_after=None):
        super().__init__(runner, dataloader)
        self.signal_after = signal_after

    def run(self):
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        torch.rand(1)
        loop = self.runner.train_loop
        done = loop.epoch if isinstance(loop, EpochBasedTrainLoop) \
            else loop.iter
        if done == self.signal_after:
            os.kill(os.getpid(), signal.SIGUSR1)
        self.runner.call_hook('after_val_epoch', metrics={})
        self.runner.call_hook('after_val')
        return {}


@pytest.mark.parametrize('method,signal_in,after,expected', [
    ('mae', 'val', 3, 'iter_3.pth'),           # during the validation
    ('mae', 'iteration', 3, 'iter_3.pth'),     # before a validation is due
    ('mae_epochs', 'val', 1, 'epoch_1.pth'),
    ('mae_epochs', 'iteration', 2, 'epoch_1.pth'),  # an epoch's last
])
def test_validation_is_finished_then_the_run_stops(
        tmp_path, method, signal_in, after, expected):
    """Training validates after every iteration (epoch); a signal during a
    validation, or during an iteration a validation follows, stops the run
    after that validation (finished), with a checkpoint of the state after
    it; the resumed run ends bit-exact."""
    def cfg(work, signal_after=None):
        c = method_config(method, tmp_path, work)
        c.val_dataloader = c.train_dataloader
        c.val_evaluator = dict(type='Accuracy')
        c.val_cfg = dict(type='RandomValLoopForTest',
                         signal_after=signal_after)
        c.train_cfg.val_interval = 1
        return c

    build(cfg('full')).train()
    hooks = [SignalAt(after, signal.SIGUSR1)] if signal_in == 'iteration' \
        else []
    stopped = build(cfg('stopped', after if signal_in == 'val' else None),
                    hooks)
    with pytest.raises(TrainingStopped, match='after the validation after '):
        stopped.train()
    ckpt = str(tmp_path / 'stopped' / expected)
    assert stopped.iter == (3 if method == 'mae' else 2)
    assert stop_checkpoint(tmp_path / 'stopped') == ckpt
    c = cfg('stopped')
    c.resume, c.load_from = True, None
    resolve_resume(c)
    assert c.load_from == ckpt
    build(c).train()
    assert_same_tensors(str(tmp_path / 'full' / final(method)),
                        str(tmp_path / 'stopped' / final(method)))


def stop_checkpoint(work):
    with open(work / MARKER) as f:
        return f.read()


def test_signal_during_self_guided_generation_stops_the_pass(
        tmp_path, monkeypatch):
    """The switch at 2 starts the generation pass (4 batches of 2 of the
    8 images); a SIGUSR1 during its second batch ends the pass there, the
    stop saves iteration 2 with the cache not generated, and the resumed
    run generates it and ends bit-exact."""
    from mlmask_mm.models.algorithms import SelfGuidedMAE
    full = build(method_config('sg_mae_after', tmp_path, 'full'))
    full.train()

    calls = []
    real = SelfGuidedMAE.image_relevance

    def relevance(self, inputs, *args, **kwargs):
        calls.append(len(inputs))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return real(self, inputs, *args, **kwargs)

    monkeypatch.setattr(SelfGuidedMAE, 'image_relevance', relevance)
    stopped = build(method_config('sg_mae_after', tmp_path, 'stopped'))
    with pytest.raises(TrainingStopped, match='after iteration 2'):
        stopped.train()
    assert calls == [2, 2]  # the pass stopped before its third batch
    saved = torch.load(str(tmp_path / 'stopped' / 'iter_2.pth'),
                       weights_only=True)['state_dict']
    assert int(saved['sg_state.switch'][0]) == 2
    assert 'sg_state.cache_filled' not in saved  # no cache yet
    log = open(stopped.logger.handlers[-1].baseFilename).read()
    assert 'relevance generation at iteration 2 stopped after 2 of 4 ' \
        'batches' in log

    monkeypatch.setattr(SelfGuidedMAE, 'image_relevance', real)
    resumed = build(resume_config('sg_mae_after', tmp_path, 'stopped'))
    resumed.train()
    assert_same_tensors(str(tmp_path / 'full' / f'iter_{N}.pth'),
                        str(tmp_path / 'stopped' / f'iter_{N}.pth'))


def test_signal_during_mlo_stage2_evaluation_finishes_it(tmp_path,
                                                        monkeypatch):
    """A SIGTERM during MLO-MAE's stage-II evaluation after iteration 2:
    the evaluation is finished and recorded, the run stops at the end of
    that iteration, the resumed run ends bit-exact."""
    from mlmask_mm.models.algorithms import MLOMAE
    full = build(method_config('mlo_mae_stage2', tmp_path, 'full'))
    full.train()

    real = MLOMAE.predict
    calls = []

    def predict(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MLOMAE, 'predict', predict)
    stopped = build(method_config('mlo_mae_stage2', tmp_path, 'stopped'))
    with pytest.raises(TrainingStopped, match='after iteration 2 '):
        stopped.train()
    assert len(calls) == 2  # both batches of the 6 held-out images
    ckpt = torch.load(str(tmp_path / 'stopped' / 'iter_2.pth'),
                      weights_only=True)
    history = ckpt['message_hub']['runtime_info']['mlo_stage2']
    assert [h['iter'] for h in history] == [2]

    monkeypatch.setattr(MLOMAE, 'predict', real)
    build(resume_config('mlo_mae_stage2', tmp_path, 'stopped')).train()
    assert_same_tensors(str(tmp_path / 'full' / f'iter_{N}.pth'),
                        str(tmp_path / 'stopped' / f'iter_{N}.pth'))


@pytest.mark.parametrize('regular', [True, False])
def test_signals_during_a_save_do_not_corrupt_it(tmp_path, monkeypatch,
                                                 regular):
    """SIGTERM arrives while a checkpoint is being written: the regular
    save of iteration 2 (the first signal), or the stop's own save of
    iteration 3 (a second signal); the file is completed, then the run
    stops."""
    cfg = method_config('mae', tmp_path, 'work')
    hooks = []
    if not regular:
        cfg.default_hooks.checkpoint.interval = 10
        hooks = [SignalAt(3, signal.SIGUSR1)]
    real_fsync = checkpoint_files.os.fsync
    during = []

    def fsync(fd):  # the bytes are written, not yet durable or renamed
        during.append(os.readlink(f'/proc/self/fd/{fd}'))
        os.kill(os.getpid(), signal.SIGTERM)
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint_files.os, 'fsync', fsync)
    runner = build(cfg, hooks)
    at = 2 if regular else 3
    with pytest.raises(TrainingStopped, match=f'after iteration {at}'):
        runner.train()
    ckpt = str(tmp_path / 'work' / f'iter_{at}.pth')
    assert during[0].endswith(f'.iter_{at}.pth.partial')
    assert checkpoint_problem(ckpt) is None
    torch.load(ckpt, weights_only=True)
    with open(tmp_path / 'work' / 'last_checkpoint') as f:
        assert f.read() == ckpt


def test_previous_handler_is_chained_and_the_switch_turns_it_off(
        tmp_path):
    """A handler installed before (e.g. submitit's) is still called; with
    ``enabled=False`` only it runs and training goes on."""
    got = []
    signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    runner = build(method_config('mae', tmp_path, 'on'),
                   [SignalAt(2, signal.SIGUSR1)])
    with pytest.raises(TrainingStopped, match='after iteration 2'):
        runner.train()
    assert got == [signal.SIGUSR1]

    cfg = method_config('mae', tmp_path, 'off')
    cfg.default_hooks.preemption.enabled = False
    runner = build(cfg, [SignalAt(2, signal.SIGUSR1)])
    runner.train()
    assert runner.iter == N and got == [signal.SIGUSR1] * 2
    assert not osp.exists(tmp_path / 'off' / MARKER)


def test_runners_built_before_another_one_trained_still_stop(tmp_path):
    """The first runner's training restores the previous handlers at its
    end; the second, built before, installs its own again."""
    first = build(method_config('mae', tmp_path, 'first'))
    second = build(method_config('mae', tmp_path, 'second'),
                   [SignalAt(2, signal.SIGUSR1)])
    first.train()
    with pytest.raises(TrainingStopped, match='after iteration 2'):
        second.train()


def test_a_signal_in_the_last_iteration_lets_the_run_finish(tmp_path):
    runner = build(method_config('mae', tmp_path, 'work'),
                   [SignalAt(N, signal.SIGTERM)])
    runner.train()
    assert runner.iter == N
    assert checkpoint_problem(str(tmp_path / 'work' / f'iter_{N}.pth')) \
        is None
    assert not osp.exists(tmp_path / 'work' / MARKER)


def test_forked_children_ignore_the_signals_and_bad_settings(tmp_path):
    hook = PreemptionHook()
    # as during training
    preemption_hook._SIGNALS.active, preemption_hook._SIGNALS.received = \
        hook, []
    pid = os.fork()
    if pid == 0:  # a dataloader worker forked from the trainer
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        os._exit(0 if not preemption_hook.stop_requested() else 3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not preemption_hook.stop_requested()  # the trainer saw none
    preemption_hook._SIGNALS.active = None  # not training: still ignored
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with pytest.raises(ValueError, match="'SIGKILL' is not a signal"):
        PreemptionHook(signals=('SIGTERM', 'SIGKILL'))
    with pytest.raises(ValueError, match="'USR1' is not a signal"):
        PreemptionHook(signals='USR1')


# ========================================================== full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / 'disk'
    mount.mkdir()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs',
                           str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip('cannot mount a size-limited tmpfs here (needs root '
                    f'and CAP_SYS_ADMIN): {proc.stderr.strip()}')
    try:
        yield mount
    finally:
        subprocess.run(['umount', '-l', str(mount)], check=False)


class FillDisk(Hook):
    """After iteration ``at`` (its checkpoint written), fill the file
    system up to ``leave`` bytes."""
    priority = 'LOWEST'

    def __init__(self, at, path, leave):
        self.at, self.path, self.leave = at, path, leave

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at:
            st = os.statvfs(osp.dirname(self.path))
            with open(self.path, 'wb') as f:
                f.write(b'\0' * (st.f_bavail * st.f_frsize - self.leave))


@pytest.mark.parametrize('stop', [False, True])
def test_full_disk_keeps_the_previous_checkpoint_then_resumes(
        tmp_path, small_disk, stop):
    """The disk is full after iteration 2's checkpoint; the next one (the
    regular one of iteration 4, or the stop's of iteration 3) fails."""
    cfg = method_config('mae', tmp_path, 'unused')
    cfg.work_dir = str(small_disk / 'work')
    filler = str(small_disk / 'filler')
    hooks = [FillDisk(2, filler, 64 * 1024)]
    if stop:
        hooks.append(SignalAt(3, signal.SIGTERM))
    runner = build(cfg, hooks)
    with pytest.raises(DiskFullError) as err:
        runner.train()
    work = small_disk / 'work'
    ckpt4 = str(work / ('iter_3.pth' if stop else 'iter_4.pth'))
    ckpt2 = str(work / 'iter_2.pth')
    size = osp.getsize(ckpt2)
    assert size > 128 * 1024  # does not fit
    msg = str(err.value)
    assert f"cannot write '{ckpt4}'" in msg and 'No space left' in msg
    assert 'KiB free of 2.0 MiB' in msg and str(work) in msg
    assert not osp.exists(ckpt4)
    assert not osp.exists(checkpoint_files.partial_path(ckpt4))
    assert checkpoint_problem(ckpt2) is None
    with open(work / 'last_checkpoint') as f:
        assert f.read() == ckpt2

    os.remove(filler)  # space freed; --resume goes on from iteration 2
    cfg = method_config('mae', tmp_path, 'unused')
    cfg.work_dir = str(work)
    cfg.resume, cfg.load_from = True, None
    resolve_resume(cfg)
    assert cfg.load_from == ckpt2
    resumed = build(cfg)
    resumed.train()
    assert resumed.iter == N and checkpoint_problem(
        str(work / f'iter_{N}.pth')) is None


# ============================================ a real process and its workers
@pytest.mark.slow
def test_tools_train_under_a_signal_to_every_process_then_same_command(
        tmp_path):
    """``tools/train.py`` with 2 dataloader workers; when iteration 3
    starts, SIGUSR1 goes to every process of its group (as slurm signals
    every process of a step): the workers carry on, the trainer saves,
    exits 75, and the same command resumes and finishes."""
    root = make_image_folder(str(tmp_path / 'images'), per_class=4)
    cfg = tiny_config(root, str(tmp_path / 'work'), max_iters=N)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=2, by_epoch=False,
        backend_args=dict(backend='local_atomic'))
    cfg.train_dataloader.update(num_workers=2, persistent_workers=True)
    cfg.custom_imports = dict(imports=['mlmask_mm', 'wait_hook_for_test'],
                              allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='WaitForSignalForTest', at=3,
                             ready=str(tmp_path / 'ready'))]
    path = str(tmp_path / 'cfg.py')
    with open(path, 'w') as f:
        f.write(_PRETTY_TEXT.fget(cfg))
    (tmp_path / 'wait_hook_for_test.py').write_text(_WAIT_HOOK)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        p for p in (str(tmp_path), REPO, os.environ.get('PYTHONPATH')) if p))
    command = [sys.executable, osp.join(REPO, 'tools', 'train.py'), path]
    proc = subprocess.Popen(command, cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.time() + 240
    while not osp.exists(tmp_path / 'ready') and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.2)
    workers = group_members(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGUSR1)
    output = proc.communicate(timeout=240)[0]
    assert len(workers) >= 3, output[-3000:]  # the trainer and 2 workers
    assert proc.returncode == EXIT_CODE, output[-4000:]
    assert 'SIGUSR1 received; stopping after iteration 3' in output
    assert 'DataLoader worker' not in output
    work = tmp_path / 'work'
    assert checkpoint_problem(str(work / 'iter_3.pth')) is None

    proc = subprocess.run(command, cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert 'stopped by a signal; resuming it' in output
    assert 'resumed epoch: 0, iter: 3' in output
    assert checkpoint_problem(str(work / f'iter_{N}.pth')) is None


def group_members(pgid: int) -> list:
    """The processes of a process group."""
    found = []
    for pid in os.listdir('/proc'):
        try:
            if pid.isdigit() and os.getpgid(int(pid)) == pgid:
                found.append(int(pid))
        except ProcessLookupError:  # ended meanwhile
            pass
    return found


_PRETTY_TEXT = Config.pretty_text  # the real one, for config files
_WAIT_HOOK = '''
import os
import time

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mlmask_mm.engine.hooks import preemption_hook



@HOOKS.register_module()
class WaitForSignalForTest(Hook):
    priority = 'HIGHEST'

    def __init__(self, at, ready):
        self.at, self.ready = at, ready

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 != self.at:
            return
        open(self.ready, 'w').close()
        deadline = time.time() + 120
        while not preemption_hook.stop_requested() and \\
                time.time() < deadline:
            time.sleep(0.05)
'''


# ============================================================ two ranks
_DIST_CASES = [  # (method, signal, iteration), the signal to rank 1 only
    ('mae', 'SIGUSR1', 3),
    ('cl_mae', 'SIGTERM', 3),
    ('sg_mae_before', 'SIGUSR1', 3),
    ('sg_mae_after', 'SIGTERM', 3),
    ('sg_mae_generation', 'SIGUSR1', 2),  # in rank 1's generation batch
    ('mlo_mae', 'SIGUSR1', 3),
]


def _dist_worker(rank, world_size, init_file, tmp):
    """Each case on 2 gloo processes: uninterrupted, stopped by a signal to
    rank 1, resumed; rank 0 compares the final checkpoints."""
    import datetime
    import pathlib

    import torch.distributed as dist
    from mlmask_mm.models.algorithms import SelfGuidedMAE
    torch.set_num_threads(1)
    os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    Config.pretty_text = property(lambda self: repr(self._cfg_dict))
    import mmengine.runner.loops as loops  # no 2 s sleep at epoch ends
    loops.time = types.SimpleNamespace(sleep=lambda s: None)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=120))
    tmp = pathlib.Path(tmp)
    real = SelfGuidedMAE.image_relevance
    try:
        for method, signame, at in _DIST_CASES:
            config = 'sg_mae_after' if method == 'sg_mae_generation' \
                else method

            def cfg(work, resume=False):
                c = (resume_config if resume else method_config)(
                    config, tmp, f'{method}_{work}')
                c.launcher = 'pytorch'
                return c

            build(cfg('full')).train()
            hooks = []
            signum = getattr(signal, signame)
            if method == 'sg_mae_generation':
                def relevance(self, inputs, *args, **kwargs):
                    if rank == 1:
                        os.kill(os.getpid(), signum)
                    return real(self, inputs, *args, **kwargs)
                SelfGuidedMAE.image_relevance = relevance
            else:
                hooks = [SignalAt(at, signum, rank=1)]
            runner = build(cfg('stopped'), hooks)
            try:
                runner.train()
                stopped = None
            except TrainingStopped as stop:
                stopped = (stop.code, runner.iter + 1, stop.checkpoint)
            SelfGuidedMAE.image_relevance = real
            with open(tmp / f'{method}.rank{rank}', 'w') as f:
                f.write(repr(stopped))
            dist.barrier()  # rank 0 has written the marker
            build(cfg('stopped', resume=True)).train()
            dist.barrier()
    finally:
        SelfGuidedMAE.image_relevance = real
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_stop_together_and_resume_bit_exact(tmp_path):
    """A signal to rank 1 only stops both ranks after the same iteration
    (one checkpoint of both ranks' state, exit status 75 on each), for every
    method and in Self-Guided's generation pass; the resumed 2-rank run
    ends with the uninterrupted one's tensors."""
    import torch.multiprocessing as mp
    for method in ('mae', 'mlo_mae'):  # the image folders
        method_config(method, tmp_path, 'unused')
    mp.spawn(_dist_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)),
             nprocs=2, join=True)
    for method, signame, at in _DIST_CASES:
        ckpt = str(tmp_path / f'{method}_stopped' / f'iter_{at}.pth')
        for rank in (0, 1):
            with open(tmp_path / f'{method}.rank{rank}') as f:
                assert eval(f.read()) == (EXIT_CODE, at, ckpt), method
        saved = torch.load(ckpt, weights_only=True)
        assert saved['meta']['iter'] == at
        states = saved['rng_state']['states']  # both ranks' generators
        assert len(states) == 2 and None not in states
        if method == 'sg_mae_generation':  # the pass was stopped
            assert 'sg_state.cache_filled' not in saved['state_dict']
        assert_same_tensors(
            str(tmp_path / f'{method}_full' / f'iter_{N}.pth'),
            str(tmp_path / f'{method}_stopped' / f'iter_{N}.pth'))
