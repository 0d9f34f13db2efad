"""The package's layout: every module imports, ``models/`` imports nothing
from the layers above it, the names ``mlmask_mm.models`` exported before the
move still import from there, and the option objects of the two big
constructors keep their defaults."""
import ast
import importlib
import importlib.util
import os.path as osp
import pkgutil

import pytest

import mlmask_mm
from mlmask_mm.registry import MODELS

PACKAGE = osp.dirname(mlmask_mm.__file__)
# the layers above models/: models may not import from them
ABOVE_MODELS = ('mlmask_mm.engine', 'mlmask_mm.evaluation',
                'mlmask_mm.visualization')
# transfer modules register in mmseg / mmdet, which a core install lacks
NEEDS = {'mlmask_mm.transfer.mmseg_components': 'mmseg',
         'mlmask_mm.transfer.mmdet_components': 'mmdet'}
# ``from mlmask_mm.models import X`` for every X exported before
# models/ was split into algorithms/backbones/heads/utils (issue 39)
EXPORTED_BEFORE = [
    'BaseMasker', 'BlockMasker', 'CompositeMasker', 'FastMAEPretrainDecoder',
    'FastMAEViT', 'GridMasker', 'InformedMaskContext', 'MLOMAE',
    'MLOMLPMasker', 'MLOTokenMasker', 'MaskContext', 'MaskResult',
    'MaskableViT', 'MaskedMAE', 'ProbabilityMasker', 'RandomMasker',
    'RegionMasker', 'SelfGuidedMAE', 'SelfGuidedMasker',
    'SimpleFeaturePyramid', 'ViTDet', 'check_mask_ratio', 'check_patch_grid',
    'mask_from_ranking', 'num_visible', 'algorithms', 'backbones', 'losses',
    'maskers', 'necks'
]


def all_modules():
    return sorted(m.name for m in pkgutil.walk_packages(
        mlmask_mm.__path__, prefix='mlmask_mm.'))


@pytest.mark.parametrize('name', all_modules())
def test_every_module_imports(name):
    need = NEEDS.get(name)
    if need and importlib.util.find_spec(need) is None:
        pytest.skip(f'{need} is not installed')
    importlib.import_module(name)


def imported_modules(path: str, module: str):
    """Every module that ``path`` (the file of ``module``) imports, with
    relative imports resolved."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    package = module if path.endswith('__init__.py') else module.rpartition(
        '.')[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                parent = '.'.join(parts[:len(parts) - node.level + 1])
                base = f'{parent}.{base}' if base else parent
            yield base
            yield from (f'{base}.{a.name}' for a in node.names)


def test_imported_modules_resolves_relative_imports(tmp_path):
    path = tmp_path / 'mod.py'
    path.write_text('from ..engine import parts\nfrom . import x\n'
                    'import mlmask_mm.evaluation\n')
    got = set(imported_modules(str(path), 'mlmask_mm.models.mod'))
    assert {'mlmask_mm.engine', 'mlmask_mm.engine.parts', 'mlmask_mm.models',
            'mlmask_mm.evaluation'} <= got


def test_models_import_nothing_from_the_layers_above():
    bad = []
    root = osp.join(PACKAGE, 'models')
    for info in pkgutil.walk_packages([root], prefix='mlmask_mm.models.'):
        spec = importlib.util.find_spec(info.name)
        for target in imported_modules(spec.origin, info.name):
            if target.startswith(ABOVE_MODELS):
                bad.append(f'{info.name} imports {target}')
    assert not bad, '\n'.join(bad)


@pytest.mark.parametrize('name', EXPORTED_BEFORE)
def test_names_exported_before_still_import(name):
    models = importlib.import_module('mlmask_mm.models')
    assert getattr(models, name) is not None


def test_maskers_are_registered_in_models():
    import mlmask_mm.registry as registry
    assert not hasattr(registry, 'MASKERS')
    for name in ('RandomMasker', 'BlockMasker', 'SelfGuidedMasker',
                 'MLOTokenMasker', 'CurriculumMasker'):
        assert MODELS.get(name) is not None


def test_self_guided_options_defaults():
    from test_self_guided import tiny_sg
    model = tiny_sg()
    o = model.options
    assert (o.features, o.feature_layer, o.generation,
            o.refresh_interval) == ('values', -2, 'once', None)
    assert o.ncut == dict(tau=0.0, eps=1e-5, tol=1e-4, max_iters=500,
                          patience=48, block=4, power_steps=3,
                          degenerate_cos=0.99)
    assert o.switch == dict(criterion='crossing', by_epoch=True, interval=1,
                            earliest=1, fallback=None, start=None)
    assert o.hint_ratio == model.hint_schedule == (0.05, 0.0)
    assert o.measurement == dict(num_images=256, seed=0)
    # the attributes the hook reads are the options, each its own
    for attr in ('features', 'feature_layer', 'ncut', 'generation',
                 'refresh_interval', 'switch', 'measurement'):
        assert getattr(model, attr) is getattr(o, attr), attr
    with pytest.raises(AttributeError):
        model.generation = 'iteration'
    with pytest.raises(AttributeError):
        o.features = 'blocks'


def test_mlo_mae_options_defaults():
    from test_mlo_mae import build
    model = build()
    o = model.options
    assert (o.feature, o.amp, o.learnable_pos_embed) == ('gap', None, False)
    assert model.hypergrad == dict(
        mode='exact', unroll_steps=1, unroll='exact', fd_radius=1e-2,
        head_term='double_backward', xi1=1.0, xi2=1.0)
    assert o.hypergrad.unroll_steps == 1
    assert (model.feature, model.amp) == (o.feature, o.amp) == ('gap', None)
    with pytest.raises(AttributeError):
        o.hypergrad.mode = 'finite_difference'
    # a setting given in the config reaches the options
    model = build(feature='cls', hypergrad=dict(unroll_steps=2, xi1='lr'))
    assert model.options.feature == 'cls'
    assert model.options.hypergrad.unroll_steps == 2
    assert model.options.hypergrad.xi1 == 'lr'
