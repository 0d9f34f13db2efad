"""Register the transfer components in mmseg's registries (see __init__)."""
from mmseg.registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from mlmask_mm.engine.hooks import StrictPretrainedHook
from mlmask_mm.engine.optimizers import \
    BackboneLayerDecayOptimWrapperConstructor
from mlmask_mm.models.necks import SimpleFeaturePyramid

MODELS.register_module(module=SimpleFeaturePyramid)
HOOKS.register_module(module=StrictPretrainedHook)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(
    module=BackboneLayerDecayOptimWrapperConstructor)
