"""Shared fixtures: tiny generated image folders and tiny MAE configs, the
Runner builder, and the skips of tests that need an optional part.

Optional parts (``make test`` installs them; ``make demo`` does not): a test
marked ``needs_mmseg``, ``needs_mmdet`` or ``needs_mmcv_ops`` is skipped,
with the reason, where that part is missing; with ``MLMASK_MM_FULL_STACK=1``
(set by ``make test``) a missing part fails the run instead.
"""
import contextlib
import glob
import importlib.util
import os
import os.path as osp
import sys
import types

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import DefaultScope

import mlmask_mm  # noqa: F401  (registers everything)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO, 'configs', 'mae', 'mae_vit-tiny-p4_demo.py')

# test modules share helpers (``from test_cl_mae import cl_config``): every
# folder of tests/ is importable, whichever part of the suite runs
for _folder, _, _ in os.walk(osp.dirname(osp.abspath(__file__))):
    if '__pycache__' not in _folder and _folder not in sys.path:
        sys.path.append(_folder)


def load_tool(name: str):
    """A script under tools/ as a module, by its path below tools/
    (``load_tool('analysis_tools/benchmark')``) or, when that is unique, by
    its name alone (``load_tool('fewshot')``)."""
    path = osp.join(REPO, 'tools', *name.split('/')) + '.py'
    if not osp.isfile(path) and '/' not in name:
        found = glob.glob(osp.join(REPO, 'tools', '**', name + '.py'),
                          recursive=True)
        if len(found) != 1:
            raise FileNotFoundError(
                f'load_tool: {len(found)} scripts named {name}.py under '
                f'tools/: {found}')
        path = found[0]
    spec = importlib.util.spec_from_file_location(
        'mlmask_tool_' + name.replace('/', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# generated class folders (also used by the GPU acceptance run)
from mlmask_mm.datasets.synthetic import make_image_folder  # noqa: E402,F401


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(str(tmp_path / 'images'))


def tiny_config(data_root: str, work_dir: str, max_iters: int = 4,
                img_size: int = 16, patch_size: int = 4,
                batch_size: int = 4, config: str = DEMO_CONFIG,
                **model_overrides) -> Config:
    """A demo config (default: the MAE demo; ``config``: another one built
    on it, e.g. a method's demo) shrunk to a 2-block ViT on 16 px images."""
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.model.backbone.arch = dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
    cfg.model.backbone.img_size = img_size
    cfg.model.backbone.patch_size = patch_size
    cfg.model.neck.update(
        num_patches=(img_size // patch_size)**2, patch_size=patch_size,
        embed_dim=32, decoder_embed_dim=32, decoder_depth=1,
        decoder_num_heads=2)
    cfg.model.head.patch_size = patch_size
    cfg.model.update(model_overrides)
    ds = cfg.train_dataloader.dataset
    ds.data_root = data_root
    for t in ds.pipeline:
        if t['type'] in ('RandomResizedCrop', 'RecordedRandomResizedCrop'):
            t['scale'] = img_size
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg.max_iters = max_iters
    cfg.param_scheduler = [
        dict(type='CosineAnnealingLR', by_epoch=False, begin=0,
             end=max_iters, eta_min=1e-5)
    ]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=2, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.custom_hooks = []
    cfg.randomness = dict(seed=0, deterministic=False)
    return cfg


def tensors(obj, path=''):
    """Every tensor in a (nested) checkpoint, by its path."""
    if isinstance(obj, torch.Tensor):
        return {path: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) \
        if isinstance(obj, (list, tuple)) else ()
    out = {}
    for k, v in items:
        out.update(tensors(v, f'{path}/{k}'))
    return out


def differing_tensors(expected: dict, got: dict) -> list:
    """The paths (of ``tensors``) whose dtype, shape or values differ;
    the two must hold the same paths."""
    assert got.keys() == expected.keys()
    return [k for k in expected if not (
        expected[k].dtype == got[k].dtype
        and expected[k].shape == got[k].shape
        and torch.equal(expected[k], got[k]))]


class KillAfter(Hook):
    """Stop training like a killed job, after iteration ``at`` ended."""
    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) has saved

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at:
            raise KeyboardInterrupt(f'killed after iteration {self.at}')


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', 2)))
    yield


@pytest.fixture(scope='session')
def build_runner():
    """``build_runner(cfg, name)``: a Runner from a config, as
    ``tools/train.py`` builds it (``prepare_config``), under a distinct
    experiment name (mmengine keeps loggers and visualizers by name, and two
    runners started within the same second would otherwise share them)."""
    from mlmask_mm.engine.config_checks import prepare_config
    from mmengine.runner import Runner

    def build(cfg: Config, name: str):
        cfg.experiment_name = name
        return Runner.from_cfg(prepare_config(cfg))
    return build


def _has_mmcv_ops() -> bool:
    """Full mmcv (compiled ops), not mmcv-lite."""
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except ImportError:
        return False


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


# marker: (is the part there, what it is)
OPTIONAL_PARTS = dict(
    needs_mmcv_ops=(_has_mmcv_ops, 'full mmcv with compiled ops (mmcv.ops)'),
    needs_mmseg=(lambda: _has_mmcv_ops() and _has('mmseg'),
                 'mmsegmentation and full mmcv (mmcv.ops)'),
    needs_mmdet=(lambda: _has_mmcv_ops() and _has('mmdet', 'pycocotools'),
                 'mmdet, pycocotools and full mmcv (mmcv.ops)'),
    needs_betty=(lambda: _has('betty'),
                 'betty-ml 0.2.1 (test-only, the official MLO-MAE code\'s '
                 'library: pip install --no-deps --ignore-requires-python '
                 'betty-ml==0.2.1)'),
)


def pytest_collection_modifyitems(config, items):
    missing = {marker: what for marker, (there, what) in
               OPTIONAL_PARTS.items() if not there()}
    if not missing:
        return
    for item in items:
        for marker, what in missing.items():
            if item.get_closest_marker(marker) is None:
                continue
            if os.environ.get('MLMASK_MM_FULL_STACK') == '1':
                raise pytest.UsageError(
                    f'{item.nodeid} needs {what}, which is missing, and '
                    'MLMASK_MM_FULL_STACK=1 asks for the whole stack: '
                    'run `make install-full` (or unset it to skip)')
            item.add_marker(pytest.mark.skip(
                reason=f'needs {what}; `make test` installs it'))


@contextlib.contextmanager
def epoch_sleep_off():
    """mmengine's IterBasedTrainLoop sleeps 2 s at every epoch end (only
    waiting); for module-scoped fixtures that train."""
    import mmengine.runner.loops as loops
    saved = loops.time
    loops.time = types.SimpleNamespace(sleep=lambda s: None)
    try:
        yield
    finally:
        loops.time = saved


@pytest.fixture(autouse=True)
def _no_epoch_sleep():
    with epoch_sleep_off():
        yield


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Undo the default scopes a test created (a Runner, mmdet/mmseg tools).

    mmengine resolves an unscoped type in the *latest* DefaultScope, so a
    test that leaves 'mmdet' current would make later builds from this
    package's registries look in mmdet's.
    """
    before = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)
