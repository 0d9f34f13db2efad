"""tools/dist_train.sh: two torchrun processes (gloo on CPU) train every
shipped method's demo config, and a run with one rank killed resumes to the
uninterrupted run's checkpoint, bit for bit (docs/fail_safe.md)."""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

from conftest import REPO, differing_tensors, tensors

# processes, Runners or mmseg/mmdet training: minutes in all (make test-quick
# leaves them out)
pytestmark = pytest.mark.slow

# Every shipped method's demo config, on the embedded data/cifar10_demo,
# shrunk to a 2-block ViT of width 32 (the 32 px images and the 8 x 8 patch
# grid stay), batch 4 per rank, 5 iterations, checkpoints at 3 and 5.
DEMOS = {
    'mae': 'configs/mae/mae_vit-tiny-p4_demo.py',
    'sg_mae': 'configs/sg_mae/sg-mae_vit-tiny-p4_demo.py',
    'cl_mae': 'configs/cl_mae/cl-mae_vit-tiny-p4_demo.py',
    'mlo_mae': 'configs/mlo_mae/mlo-mae_vit-tiny-p4_demo.py',
}
MAX_ITERS, CKPT, KILL = 5, 3, 4
_SHRINK = """
_base_ = [{base!r}]
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=2,
                            num_heads=2, feedforward_channels=64)),
    neck=dict(embed_dim=32, decoder_embed_dim=32, decoder_depth=1,
              decoder_num_heads=2))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False)
train_cfg = dict(max_iters={max_iters})
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={ckpt}, max_keep_ckpts=3))
"""
_METHOD = {
    'mae': '',
    # the switch forced at iteration 2 (a check after every iteration)
    'sg_mae': """
model.update(switch=dict(_delete_=True, criterion='fixed', start=2,
                         by_epoch=False, interval=1),
             measurement=dict(num_images=8))
""",
    'cl_mae': """
model.update(masker=dict(embed_dims=32, num_heads=2, num_layers=1))
""",
    'mlo_mae': """
model.update(masker=dict(hidden_dims=16),
             downstream_head=dict(in_channels=32))
train_cfg.update(train_split_dataloader=dict(batch_size=4, num_workers=0,
                                             persistent_workers=False),
                 val_split_dataloader=dict(batch_size=4, num_workers=0,
                                           persistent_workers=False))
val_dataloader = dict(batch_size=20, num_workers=0, persistent_workers=False)
""",
}
# one rank SIGKILLed at the end of iteration KILL (after the checkpoint of
# CKPT and, for Self-Guided, after the switch at 2)
_KILL_HOOK = """
import os
import signal

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillRankForTest(Hook):
    def __init__(self, iteration, rank):
        self.iteration, self.rank = iteration, rank

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.iteration and get_rank() == self.rank:
            os.kill(os.getpid(), signal.SIGKILL)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def write_config(tmp_path, method: str, kill: bool = False) -> str:
    text = _SHRINK.format(base=osp.join(REPO, DEMOS[method]),
                          max_iters=MAX_ITERS, ckpt=CKPT) + _METHOD[method]
    if kill:
        (tmp_path / 'kill_hook_for_test.py').write_text(_KILL_HOOK)
        text += ("custom_imports = dict(imports=['mlmask_mm', "
                 "'kill_hook_for_test'], allow_failed_imports=False)\n"
                 "custom_hooks = _base_.custom_hooks + [dict("
                 f"type='KillRankForTest', iteration={KILL}, rank=1)]\n")
    path = tmp_path / f'{method}{"_kill" if kill else ""}.py'
    path.write_text(text)
    return str(path)


def dist_train(config: str, work: str, *args: str, tmp_path=None):
    """``PYTHON=... bash tools/dist_train.sh CONFIG 2 --work-dir WORK ...``
    from the repository root (gloo on CPU)."""
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               OMP_NUM_THREADS='1')
    if tmp_path is not None:  # the kill hook's module
        env['PYTHONPATH'] = os.pathsep.join(
            p for p in (str(tmp_path), env.get('PYTHONPATH')) if p)
    env.pop('NNODES', None)
    env.pop('NODE_RANK', None)
    return subprocess.run(
        ['bash', osp.join('tools', 'dist_train.sh'), config, '2',
         '--work-dir', work, *args], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize('method', sorted(DEMOS))
def test_demo_config_trains_under_dist_train_and_resumes_bit_exact(
        tmp_path, method):
    """Each method's demo through ``tools/dist_train.sh CONFIG 2``; then
    (learned and informed masks) the same run with rank 1 SIGKILLed at the
    end of iteration 4, resumed with ``--resume`` from iteration 3, ends
    with a checkpoint whose every tensor equals the uninterrupted run's."""
    import mlmask_mm  # noqa: F401  (weights-only loading of checkpoints)
    work = str(tmp_path / 'full')
    proc = dist_train(write_config(tmp_path, method), work)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    ckpt = osp.join(work, f'iter_{MAX_ITERS}.pth')
    assert osp.isfile(ckpt), output[-3000:]
    logs = glob.glob(osp.join(work, '*', '*.log'))
    assert logs, output[-3000:]
    log = open(logs[0]).read()
    assert 'Distributed training: True' in log
    assert f'Iter(train) [{MAX_ITERS}/{MAX_ITERS}]' in log
    full = torch.load(ckpt, weights_only=True)
    assert full['meta']['iter'] == MAX_ITERS
    # both ranks took part: RNGStateHook gathered one generator state per
    # rank, and the ranks' generators differ (diff_rank_seed)
    rng = full['rng_state']
    assert rng['world_size'] == 2 and len(rng['states']) == 2
    assert not torch.equal(rng['states'][0]['torch'],
                           rng['states'][1]['torch'])
    assert "launcher = 'pytorch'" in full['meta']['cfg']
    if method == 'sg_mae':
        assert 'informed masks from iteration 2 on (fixed start)' in log
        assert full['state_dict']['sg_state.switch'][0] == 2
        assert bool(full['state_dict']['sg_state.cache_filled'].all())
    if method == 'mae':
        return

    work = str(tmp_path / 'killed')
    proc = dist_train(write_config(tmp_path, method, kill=True), work,
                      tmp_path=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and 'SIGKILL' in output, output[-3000:]
    assert osp.isfile(osp.join(work, f'iter_{CKPT}.pth'))
    assert not osp.isfile(osp.join(work, f'iter_{MAX_ITERS}.pth'))
    proc = dist_train(write_config(tmp_path, method), work, '--resume')
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert f'resumed epoch: 0, iter: {CKPT}' in output, output[-3000:]
    if method == 'sg_mae':
        assert 'self-guided: relevance of' not in output  # cache restored
    got = tensors(torch.load(osp.join(work, f'iter_{MAX_ITERS}.pth'),
                             weights_only=True))
    expected = tensors(full)
    different = differing_tensors(expected, got)
    assert not different, f'resumed run differs in {different[:10]}'
    assert len([k for k in expected if k.startswith('/state_dict/')]) > 20


_IN_FLIGHT_AT_EXIT = '''
import sys
import torch
import torch.distributed as dist
from mlmask_mm.utils.dist import close_process_group, finish_distributed_run

torch.set_num_threads(1)
dist.init_process_group('gloo')
if sys.argv[1] == 'finish':
    # a DDP model alive to the end holds the process group, as the Runner's
    # does (then destroying the group is not enough)
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Linear(10, 10))
    model(torch.randn(4, 10)).sum().backward()
# collectives whose tensors lose their Python references while gloo's
# worker threads still hold them, as after a hook's all_gather_object
for _ in range(20):
    dist.all_gather([torch.zeros(1000) for _ in range(2)], torch.ones(1000),
                    async_op=True)
if sys.argv[1] == 'close':
    close_process_group()
else:
    objs = [None, None]
    dist.all_gather_object(objs, dict(rank=dist.get_rank()))
    finish_distributed_run()
    raise SystemExit('finish_distributed_run returned')
'''


def _run_in_flight_script(tmp_path, mode: str, runs: int):
    script = tmp_path / 'in_flight.py'
    script.write_text(_IN_FLIGHT_AT_EXIT)
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(
                   p for p in (REPO, os.environ.get('PYTHONPATH')) if p))
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, '-m', 'torch.distributed.run',
             '--nproc_per_node=2', f'--master_port={free_port()}',
             str(script), mode], env=env, capture_output=True, text=True,
            timeout=120)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


@pytest.mark.slow
def test_closing_the_process_group_prevents_the_abort_at_exit(tmp_path):
    """Without ``close_process_group`` a script like this aborts at
    interpreter exit ("terminate called without an active exception",
    SIGABRT) in about 9 runs out of 10 on the 2-core CI machine: a gloo
    worker thread frees a finished collective's tensor after Python has
    begun finalising."""
    _run_in_flight_script(tmp_path, 'close', 3)


@pytest.mark.slow
def test_finishing_a_distributed_run_never_aborts_at_exit(tmp_path):
    """With a DDP model still holding the group, destroying the group is not
    enough (2 aborts in 20 runs here, and 2 of 12 ``dist_train.sh``
    launches under load in the suite): ``finish_distributed_run`` (used by
    tools/train.py and tools/test.py) leaves without finalisation (0 in
    20).  A random failure of this test is that abort coming back."""
    _run_in_flight_script(tmp_path, 'finish', 6)
