"""The stack `make test` installs (full mmcv with compiled ops), and what
`pip install -e .` alone gives in a fresh venv."""
import importlib.metadata

import pytest
import torch


@pytest.mark.needs_mmcv_ops
def test_full_mmcv_ops_match_torchvision():
    """tools/install_mmcv.sh built mmcv 2.1.0 with working (CPU) ops."""
    import torchvision
    from mmcv.ops import nms, roi_align

    assert importlib.metadata.version('mmcv') == '2.1.0'
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 20], 1)
    scores = torch.rand(50, generator=g)
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert torch.equal(keep.sort().values,
                       torchvision.ops.nms(boxes, scores, 0.5).sort().values)
    feats = torch.randn(1, 3, 16, 16, generator=g)
    rois = torch.tensor([[0, 1.0, 2.0, 9.0, 12.0], [0, 0.5, 0.5, 15, 15]])
    ours = roi_align(feats, rois, (4, 4), 1.0, 2, 'avg', True)
    ref = torchvision.ops.roi_align(feats, rois, (4, 4), 1.0, 2, True)
    torch.testing.assert_close(ours, ref)


# ------------------------------------------------- `pip install -e .` alone
def _core_site(tmp_path, with_mmcv: bool) -> str:
    """A folder of links to this environment's installed packages (torch,
    mmengine, mmpretrain, setuptools, ...), without mlmask_mm itself and,
    unless ``with_mmcv``, without mmcv: what PyPI would give a fresh venv for
    ``pip install -e .``, without downloading it."""
    import glob
    import os
    import os.path as osp
    import sysconfig
    site = sysconfig.get_paths()['purelib']
    out = tmp_path / ('site_mmcv' if with_mmcv else 'site')
    out.mkdir()
    for path in glob.glob(osp.join(site, '*')):
        name = osp.basename(path).lower()
        if name.endswith('.pth') or 'mlmask_mm' in name or \
                name.startswith('__pycache__') or \
                (name.startswith('mmcv') and not with_mmcv):
            continue
        os.symlink(path, out / osp.basename(path))
    return str(out)


def _fresh_venv(tmp_path, site: str) -> str:
    """A new venv (no pip, no setuptools of its own) that sees ``site``."""
    import glob
    import os.path as osp
    import subprocess
    import sys
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)],
                   check=True)
    purelib = glob.glob(str(venv / 'lib' / 'python*' / 'site-packages'))[0]
    with open(osp.join(purelib, 'core_stack.pth'), 'w') as f:
        f.write(site + '\n')
    return str(venv / 'bin' / 'python')


@pytest.mark.slow
def test_pip_install_editable_in_a_fresh_venv(tmp_path):
    """``pip install -e .`` of the checkout into a new venv that has the
    core stack but no mmcv (offline: ``--no-index``, the stack linked from
    this environment, ``--no-build-isolation``): it installs, and importing
    mlmask_mm fails with one message naming the commands that install mmcv.
    With mmcv present the same install imports and builds a model."""
    import os
    import os.path as osp
    import subprocess
    import sys
    import tomllib
    from conftest import REPO
    # the extra the message names, with the Makefile's pin
    meta = tomllib.load(open(osp.join(REPO, 'pyproject.toml'), 'rb'))
    assert meta['project']['optional-dependencies']['lite'] == [
        'mmcv-lite==2.1.0']
    assert not any(d.startswith('mmcv') for d in
                   meta['project']['dependencies'])
    assert 'mmcv-lite==2.1.0' in open(osp.join(REPO, 'Makefile')).read()
    python = _fresh_venv(tmp_path, _core_site(tmp_path, with_mmcv=False))
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK='1',
               OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    done = subprocess.run(
        [sys.executable, '-m', 'pip', '--python', python, 'install', '-q',
         '--no-index', '--no-build-isolation', '-e', REPO],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    probe = ('import importlib.util, sys\n'
             'print(importlib.util.find_spec("mlmask_mm").origin)\n'
             'import mlmask_mm\n')
    run = subprocess.run([python, '-c', probe], capture_output=True,
                         text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert run.stdout.strip() == osp.join(REPO, 'mlmask_mm', '__init__.py')
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith('ModuleNotFoundError: mlmask_mm needs mmcv 2.1.0')
    assert 'pip install mmcv-lite==2.1.0' in last
    assert 'make install-full' in last

    # the same venv, now seeing an mmcv (mmcv-lite or the full build)
    with open(osp.join(osp.dirname(osp.dirname(python)), 'lib',
                       f'python{sys.version_info.major}.'
                       f'{sys.version_info.minor}', 'site-packages',
                       'core_stack.pth'), 'w') as f:
        f.write(_core_site(tmp_path, with_mmcv=True) + '\n')
    probe = ('import torch, mlmask_mm\n'
             'from mlmask_mm.registry import MODELS\n'
             'm = MODELS.build(dict(type="RandomMasker", mask_ratio=0.75))\n'
             'r = m(torch.zeros(2, 16, 8))\n'
             'print(mlmask_mm.__file__, tuple(r.ids_keep.shape))\n')
    run = subprocess.run([python, '-c', probe], capture_output=True,
                         text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == [
        osp.join(REPO, 'mlmask_mm', '__init__.py'), '(2,', '4)']


@pytest.mark.parametrize('script,args', [
    ('dist_train.sh', ['cfg.py', '2']),
    ('dist_test.sh', ['cfg.py', 'ckpt.pth', '2']),
    ('slurm_train.sh', ['partition', 'job', 'cfg.py', 'work_dir']),
    ('slurm_test.sh', ['partition', 'job', 'cfg.py', 'ckpt.pth'])])
def test_dist_launchers_name_the_environment_when_python_lacks_it(
        tmp_path, script, args):
    """PYTHON (or the `python` on PATH) without the stack: one error saying
    how to run in `.venv`, before torchrun starts any process."""
    import os
    import os.path as osp
    import subprocess
    import sys
    from conftest import REPO
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                    str(tmp_path / 'bare')], check=True)
    env = dict(os.environ, PYTHON=str(tmp_path / 'bare' / 'bin' / 'python'))
    env.pop('PYTHONPATH', None)
    done = subprocess.run(['bash', osp.join(REPO, 'tools', script), *args],
                          env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert 'lacks torch, mmengine or mmpretrain' in done.stderr
    assert 'source .venv/bin/activate' in done.stderr
    assert 'PYTHON=.venv/bin/python' in done.stderr
    assert 'torch.distributed' not in done.stderr  # torchrun never started
    assert 'srun' not in done.stderr  # nor srun
