"""tools/dist_train.sh: two torchrun processes (gloo on CPU) train the demo."""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

from conftest import REPO, make_image_folder

TINY = [
    'model.backbone.arch.embed_dims=32',
    'model.backbone.arch.num_layers=2',
    'model.backbone.arch.num_heads=2',
    'model.backbone.arch.feedforward_channels=64',
    'model.backbone.img_size=16',
    'model.neck.num_patches=16',
    'model.neck.embed_dim=32',
    'model.neck.decoder_embed_dim=32',
    'model.neck.decoder_depth=1',
    'model.neck.decoder_num_heads=2',
    # pipeline[1] is RandomResizedCrop
    'train_dataloader.dataset.pipeline.1.scale=16',
    'train_dataloader.batch_size=4',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_cfg.max_iters=3',
    'default_hooks.checkpoint.interval=3',
    'default_hooks.logger.interval=1',
    'custom_hooks=[]',
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dist_train_two_processes(tmp_path):
    root = make_image_folder(str(tmp_path / 'images'))
    work = str(tmp_path / 'work')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               OMP_NUM_THREADS='1')
    env.pop('NNODES', None)
    env.pop('NODE_RANK', None)
    cmd = ['bash', osp.join('tools', 'dist_train.sh'),
           osp.join('configs', 'mae', 'mae_vit-tiny-p4_demo.py'), '2',
           '--work-dir', work, '--cfg-options',
           f'train_dataloader.dataset.data_root={root}'] + TINY
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]

    ckpt = osp.join(work, 'iter_3.pth')
    assert osp.isfile(ckpt), output[-3000:]
    logs = glob.glob(osp.join(work, '*', '*.log'))
    assert logs, output[-3000:]
    log = open(logs[0]).read()
    assert 'Distributed training: True' in log
    assert 'Iter(train) [3/3]' in log

    # both ranks took part: RNGStateHook gathered one generator state per
    # rank, and the ranks' generators differ (diff_rank_seed)
    import mlmask_mm  # noqa: F401  (weights-only loading of the checkpoint)
    saved = torch.load(ckpt, weights_only=True)
    assert saved['meta']['iter'] == 3
    rng = saved['rng_state']
    assert rng['world_size'] == 2 and len(rng['states']) == 2
    assert not torch.equal(rng['states'][0]['torch'],
                           rng['states'][1]['torch'])
    assert "launcher = 'pytorch'" in saved['meta']['cfg']
