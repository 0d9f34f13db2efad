"""Registries of mlmask_mm: one child of each of mmpretrain's registries.

With ``default_scope = 'mlmask_mm'`` a config finds this package's components
first, then mmpretrain's, then mmengine's.  From any other OpenMMLab project
(mmseg, mmdet, mmpretrain configs) the components are reached as
``type='mlmask_mm.Name'`` after ``custom_imports=dict(imports=['mlmask_mm'])``.
"""
from mmengine.registry import Registry
from mmpretrain import registry as _parent

# where each registry's components are defined (imported on first use)
_LOCATIONS = {
    'MODELS': ['mlmask_mm.models', 'mlmask_mm.evaluation'],
    'HOOKS': ['mlmask_mm.engine'],
    'LOOPS': ['mlmask_mm.engine'],
    'DATASETS': ['mlmask_mm.datasets'],
    'TRANSFORMS': ['mlmask_mm.datasets'],
}


def _child(name: str) -> Registry:
    parent = getattr(_parent, name)
    return Registry(
        parent.name,
        parent=parent,
        scope='mlmask_mm',
        # importing ours also imports the parent's modules it may delegate to
        locations=list(parent._locations) + _LOCATIONS.get(name, []))


RUNNERS = _child('RUNNERS')
RUNNER_CONSTRUCTORS = _child('RUNNER_CONSTRUCTORS')
LOOPS = _child('LOOPS')
HOOKS = _child('HOOKS')
LOG_PROCESSORS = _child('LOG_PROCESSORS')
OPTIMIZERS = _child('OPTIMIZERS')
OPTIM_WRAPPERS = _child('OPTIM_WRAPPERS')
OPTIM_WRAPPER_CONSTRUCTORS = _child('OPTIM_WRAPPER_CONSTRUCTORS')
PARAM_SCHEDULERS = _child('PARAM_SCHEDULERS')
DATASETS = _child('DATASETS')
DATA_SAMPLERS = _child('DATA_SAMPLERS')
TRANSFORMS = _child('TRANSFORMS')
MODELS = _child('MODELS')
MODEL_WRAPPERS = _child('MODEL_WRAPPERS')
WEIGHT_INITIALIZERS = _child('WEIGHT_INITIALIZERS')
BATCH_AUGMENTS = _child('BATCH_AUGMENTS')
TASK_UTILS = _child('TASK_UTILS')
METRICS = _child('METRICS')
EVALUATORS = _child('EVALUATORS')
VISUALIZERS = _child('VISUALIZERS')
VISBACKENDS = _child('VISBACKENDS')
