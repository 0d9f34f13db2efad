"""Gradient averaging of models that take their own optimizer steps, under
``PartsDataParallel`` on 2 gloo processes (CPU).

``PartsDataParallel`` does not synchronise gradients: the model averages
them (``average_over_ranks``).  Each process gets different data, so a
model that does not average trains each process on its own gradients; the
wrapper's check stops it after the first step.  CL-MAE (its tiny demo
model), which averages, keeps every parameter equal on both processes.
"""
import os.path as osp

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from conftest import REPO

# processes, Runners or mmseg/mmdet training: minutes in all (make test-quick
# leaves them out)
pytestmark = pytest.mark.slow


class OwnSteps(nn.Module):
    """Two parts, each with its own SGD, stepped inside ``train_step``."""

    def __init__(self, average: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)
        self.average = average
        self.opts = [torch.optim.SGD(m.parameters(), lr=0.1)
                     for m in (self.body, self.head)]

    def train_step(self, data, optim_wrapper=None):
        from mlmask_mm.utils.dist import average_over_ranks
        loss = self.head(torch.relu(self.body(data))).square().mean()
        for opt in self.opts:
            opt.zero_grad()
        loss.backward()
        if self.average:
            average_over_ranks(p.grad for p in self.parameters())
        for opt in self.opts:
            opt.step()
        return dict(loss=loss.detach())


def _worker(rank, world, init_file, kind, out_file):
    import torch.distributed as dist
    from mmengine.registry import DefaultScope
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    import mlmask_mm  # noqa: F401
    from mlmask_mm.engine.parts import PartsDataParallel
    result = dict(error=None)
    try:
        if kind == 'cl_mae':
            model, wrapper, batches = _cl_mae(rank)
        else:
            model = OwnSteps(average=(kind == 'averaging'))
            wrapper = None
            g = torch.Generator().manual_seed(100 + rank)  # rank's own data
            batches = [torch.randn(8, 4, generator=g) for _ in range(3)]
        wrapped = PartsDataParallel(model, sync_check_interval=1)
        init = {k: v.detach().clone() for k, v in model.named_parameters()}
        with DefaultScope.overwrite_default_scope('mlmask_mm'):
            for batch in batches:
                wrapped.train_step(batch, wrapper)
    except RuntimeError as e:
        result['error'] = str(e)
    result['params'] = {k: v.detach().clone()
                        for k, v in model.named_parameters()}
    result['trained'] = sorted(k for k, v in result['params'].items()
                               if not torch.equal(v, init[k]))
    torch.save(result, f'{out_file}.{rank}')
    dist.destroy_process_group()


def _cl_mae(rank):
    """The CL-MAE demo model at test size, its optimizers, and 2 batches of
    the rank's own images."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mlmask_mm.registry import MODELS
    from conftest import tiny_config
    cfg = tiny_config('unused', 'unused', config=osp.join(
        REPO, 'configs', 'cl_mae', 'cl-mae_vit-tiny-p4_demo.py'))
    cfg.model.masker.update(num_patches=16, embed_dims=32, num_heads=2,
                            num_layers=1)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mlmask_mm'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(100 + rank)
    batches = [dict(inputs=torch.randint(0, 256, (4, 3, 16, 16), generator=g,
                                         dtype=torch.uint8),
                    data_samples=[DataSample() for _ in range(4)])
               for _ in range(2)]
    return model, wrapper, batches


def run_two_ranks(tmp_path, kind):
    out = str(tmp_path / 'out')
    mp.spawn(_worker, args=(2, str(tmp_path / 'init'), kind, out), nprocs=2,
             join=True)
    return [torch.load(f'{out}.{r}', weights_only=True) for r in (0, 1)]


def test_own_steps_without_averaging_are_refused(tmp_path):
    results = run_two_ranks(tmp_path, 'no_averaging')
    for r in results:
        assert r['error'] is not None, 'not refused: the processes diverged'
        assert 'after training step 1 the processes hold different' in \
            r['error']
        assert 'average_over_ranks' in r['error']
        assert 'body.weight' in r['error']
    # what the check saw: the parameters really differ between processes
    assert not torch.equal(results[0]['params']['body.weight'],
                           results[1]['params']['body.weight'])


@pytest.mark.parametrize('kind', ['averaging', 'cl_mae'])
def test_averaged_steps_keep_the_processes_equal(tmp_path, kind):
    results = run_two_ranks(tmp_path, kind)
    for r in results:
        assert r['error'] is None, r['error']
    p0, p1 = results[0]['params'], results[1]['params']
    assert p0.keys() == p1.keys()
    assert all(torch.equal(p0[k], p1[k]) for k in p0)
    trained = results[0]['trained']
    assert trained == results[1]['trained']
    if kind == 'cl_mae':  # both parts took steps
        assert any(k.startswith('masker.') for k in trained)
        assert any(k.startswith('backbone.') for k in trained)
    else:
        assert trained == sorted(p0)
