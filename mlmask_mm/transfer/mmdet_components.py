"""Register the transfer components in mmdet's registries (see __init__)."""
from mmdet.registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.models.utils import LayerNorm2d

from mlmask_mm.engine.hooks import StrictPretrainedHook
from mlmask_mm.engine.optimizers import \
    BackboneLayerDecayOptimWrapperConstructor
from mlmask_mm.models.backbones import ViTDet
from mlmask_mm.models.necks import SimpleFeaturePyramid

MODELS.register_module(module=SimpleFeaturePyramid)
MODELS.register_module(module=ViTDet)
# ViTDet's heads normalise over channels (mmdet projects/ViTDet 'LN2d');
# mmdet itself has no such norm: mmpretrain's LayerNorm2d, the same
# F.layer_norm over channels (give eps=1e-6 as ViTDet does)
if 'LN2d' not in MODELS.module_dict:
    MODELS.register_module(name='LN2d', module=LayerNorm2d)
HOOKS.register_module(module=StrictPretrainedHook)
OPTIM_WRAPPER_CONSTRUCTORS.register_module(
    module=BackboneLayerDecayOptimWrapperConstructor)
