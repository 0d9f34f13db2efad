"""Layer-wise lr decay for any model whose ``backbone`` is a ViT.

BEiT §2.4 / MAE appendix A.3: parameter group at depth d of a ViT with n
blocks gets

    lr_d = lr · ρ^(n + 1 − d),   d = 0 (patch embed, cls token, pos embed),
                                 d = i + 1 (block i), d = n + 1 (the rest).

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` implements this
but asks the *whole model* for ``get_layer_depth``, which only mmpretrain's
classifiers have; mmseg's own ``LayerDecayOptimizerConstructor`` only
accepts backbones whose class name contains BEiT/MAE/ConvNeXt.  This
constructor takes the depth from ``model.backbone.get_layer_depth`` (e.g.
mmpretrain's ``VisionTransformer``), so mmseg's ``EncoderDecoder`` and
mmdet's ``MaskRCNN`` get the decay; necks and heads are at depth n + 1
(ρ⁰ = full lr).  Settings as mmpretrain's: ``paramwise_cfg=dict(
layer_decay_rate=ρ, norm_decay_mult=..., bias_decay_mult=...,
custom_keys=...)``.
"""
from functools import partial

from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor

from mlmask_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor, depths from ``model.backbone``."""

    def add_params(self, params, module, prefix='', get_layer_depth=None,
                   **kwargs) -> None:
        if prefix == '' and get_layer_depth is None:
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(
                    'BackboneLayerDecayOptimWrapperConstructor needs '
                    'model.backbone.get_layer_depth (e.g. mmpretrain\'s '
                    f'VisionTransformer); {type(module).__name__}.backbone is '
                    f'{type(backbone).__name__}')
            get_layer_depth = partial(backbone.get_layer_depth,
                                      prefix='backbone.')
        super().add_params(params, module, prefix=prefix,
                           get_layer_depth=get_layer_depth, **kwargs)
