"""Packaging as OpenMMLab does: configs/ and tools/ in the wheel under
mlmask_mm/.mim (setup.py), found by mlmask_mm.paths in a wheel install and
in a checkout; metafiles listing every config; configs reusable from another
project; the Slurm launchers."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
import yaml
from conftest import REPO
from mmengine.config import Config

from mlmask_mm import paths

#: files whose only content is a `_base_` to a sibling (short names)
ALIASES = {'configs/mlo_mae/vitb_in1k.py'}


def _configs():
    return sorted(p for p in glob.glob(osp.join('configs', '*', '*.py'),
                                       root_dir=REPO)
                  if not p.startswith(osp.join('configs', '_base_')))


def test_model_index_lists_every_config_once():
    index = yaml.safe_load(open(osp.join(REPO, 'model-index.yml')))
    listed = []
    for metafile in index['Import']:
        meta = yaml.safe_load(open(osp.join(REPO, metafile)))
        collections = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            assert model['In Collection'] in collections, model['Name']
            assert osp.isfile(osp.join(REPO, model['Config'])), model
            assert model['Name'] == osp.basename(model['Config'])[:-3]
            assert osp.dirname(model['Config']) == osp.dirname(metafile)
            listed.append(model['Config'])
    assert len(listed) == len(set(listed))
    missing = sorted(set(_configs()) - set(listed) - ALIASES)
    assert not missing, (f'{missing}: add them to the metafile.yml of '
                         'their folder')
    folders = {osp.dirname(p) for p in _configs()}
    assert folders == {osp.dirname(m) for m in index['Import']}


def test_paths_find_the_checkout_configs_and_tools():
    assert paths.resource_root() == REPO
    assert paths.config_path('mae/mae_vit-tiny-p4_demo.py') == osp.join(
        REPO, 'configs', 'mae', 'mae_vit-tiny-p4_demo.py')
    assert paths.tool_path('model_converters/mlmask2backbone.py') == \
        osp.join(REPO, 'tools', 'model_converters', 'mlmask2backbone.py')
    with pytest.raises(FileNotFoundError, match='nothing.py is not in'):
        paths.config_path('mae/nothing.py')
    with pytest.raises(FileNotFoundError, match='train2.py is not in'):
        paths.tool_path('train2.py')


def test_paths_cli_prints_the_folders(capsys):
    assert paths.main(['tools']) == 0
    assert capsys.readouterr().out.strip() == osp.join(REPO, 'tools')
    assert paths.main(['nothing']) == 2


def test_another_project_inherits_a_config_through_its_path(tmp_path):
    """The README's recipe: a config outside this repository takes ours as
    `_base_` through mlmask_mm.paths and overrides one key."""
    mine = tmp_path / 'my_mae.py'
    mine.write_text(
        "_base_ = [__import__('mlmask_mm.paths').paths.config_path(\n"
        "    'mae/mae_vit-tiny-p4_demo.py')]\n"
        "model = dict(masker=dict(type='BlockMasker'))\n")
    cfg = Config.fromfile(str(mine))
    ours = Config.fromfile(paths.config_path('mae/mae_vit-tiny-p4_demo.py'))
    assert cfg.model.masker.type == 'BlockMasker'
    assert cfg.model.masker.mask_ratio == ours.model.masker.mask_ratio
    cfg.model.masker.type = ours.model.masker.type
    assert cfg.to_dict() == ours.to_dict()


@pytest.mark.parametrize('script,n_args,tool', [
    ('slurm_train.sh', 4, 'train.py'), ('slurm_test.sh', 4, 'test.py')])
def test_slurm_launchers_call_srun_with_the_tool(tmp_path, script, n_args,
                                                 tool):
    """A stand-in `srun` records its arguments."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    record = tmp_path / 'args'
    fake = bin_dir / 'srun'
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {record}\n')
    fake.chmod(0o755)
    # PYTHON: the environment with the stack (the launcher refuses another)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               GPUS='16', SRUN_ARGS='--time=1:00 --qos=high',
               PYTHON=sys.executable)
    cmd = ['bash', osp.join(REPO, 'tools', script), 'part', 'job', 'a.py',
           'b', '--cfg-options', 'x=1']
    subprocess.run(cmd, env=env, check=True)
    args = record.read_text().split('\n')
    assert args[:2] == ['-p', 'part'] and '--job-name=job' in args
    assert '--ntasks=16' in args and '--gres=gpu:8' in args
    assert '--time=1:00' in args and '--qos=high' in args
    i = args.index(osp.join(REPO, 'tools', tool))
    assert args[i + 1] == 'a.py'
    assert args[i + 2] in ('--work-dir=b', 'b')
    assert args[-4:-1] == ['slurm', '--cfg-options', 'x=1']
    short = subprocess.run(cmd[:n_args + 1], env=env, capture_output=True,
                           text=True)
    assert short.returncode == 2 and 'usage' in short.stderr


SOURCES = ('pyproject.toml', 'setup.py', 'MANIFEST.in', 'README.md',
           'LICENSE', 'Makefile', 'model-index.yml', 'mlmask_mm', 'configs',
           'tools', 'docs', 'tests', 'projects', 'data/cifar10_demo')


def _build(hook: str, src: str, out: str) -> str:
    """One PEP 517 hook of setuptools (offline, no isolation); returns the
    built file's path."""
    code = ('import sys; from setuptools import build_meta as b; '
            f'print(b.{hook}(sys.argv[1]))')
    done = subprocess.run([sys.executable, '-c', code, out], cwd=src,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return osp.join(out, done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sdist_and_wheel_ship_configs_tools_and_license(tmp_path):
    """sdist of a copy of the checkout, the wheel built from that sdist (as
    `python -m build` does), then the wheel unpacked and used: paths, the
    tools and a config with relative `_base_` come from .mim; the study and
    benchmark harnesses (tools/study, tools/benchmark) stay out."""
    src = tmp_path / 'src'
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info')
    for name in SOURCES:
        path = osp.join(REPO, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            os.makedirs(osp.dirname(src / name), exist_ok=True)
            shutil.copy2(path, src / name)
    sdist = _build('build_sdist', str(src), str(tmp_path / 'dist'))
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / 'sdist', filter='data')
        names = {n.split('/', 1)[1] for n in tar.getnames() if '/' in n}
    for name in ('tests/conftest.py', 'LICENSE', 'setup.py', 'model-index.yml',
                 'configs/mae/mae_vit-tiny-p4_demo.py', 'tools/train.py',
                 'data/cifar10_demo/truck/0000.jpg', 'Makefile'):
        assert name in names, name
    unpacked = glob.glob(str(tmp_path / 'sdist' / '*'))[0]
    wheel = _build('build_wheel', unpacked, str(tmp_path / 'wheel'))
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
        z.extractall(tmp_path / 'site')
    mim = 'mlmask_mm/.mim/'
    configs = {f for f in files if f.startswith(mim + 'configs/')}
    assert {mim + p for p in _configs()} <= configs
    assert mim + 'configs/_base_/default_runtime.py' in configs
    for tool in ('train.py', 'test.py', 'dist_train.sh', 'slurm_train.sh',
                 'slurm_test.sh', 'model_converters/mlmask2backbone.py',
                 'dataset_converters/cifar_to_folders.py'):
        assert mim + 'tools/' + tool in files, tool
    assert mim + 'model-index.yml' in files
    harness = sorted(f for f in files if f.startswith((
        'mlmask_mm/benchmark/', 'mlmask_mm/evaluation/study',
        mim + 'tools/study/', mim + 'tools/benchmark/',
        mim + 'tools/misc/study', mim + 'tools/analysis_tools/benchmark')))
    assert not harness, harness
    assert 'tools/study/study.py' in names  # the sdist keeps it
    assert any(f.endswith('.dist-info/licenses/LICENSE') for f in files)
    assert not any('__pycache__' in f for f in files)

    site = str(tmp_path / 'site')
    probe = (
        'import os.path as osp\n'
        'from mmengine.config import Config\n'
        'from mlmask_mm import paths\n'
        'print(paths.resource_root())\n'
        'print(paths.tool_path("train.py"))\n'
        'cfg = Config.fromfile(paths.config_path('
        '"cl_mae/cl-mae_vit-tiny-p4_1xb64-coslr-10k_cifar10.py"))\n'
        'print(cfg.model.type, cfg.train_dataloader.dataset.data_root)\n')
    done = subprocess.run(
        [sys.executable, '-c', probe], cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=site), capture_output=True,
        text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    root, train, model = done.stdout.strip().splitlines()[-3:]
    assert root == osp.join(site, 'mlmask_mm', '.mim')
    assert train == osp.join(root, 'tools', 'train.py')
    assert model == 'CLMAE data/cifar10'
