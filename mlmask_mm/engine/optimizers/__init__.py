from .backbone_layer_decay import BackboneLayerDecayOptimWrapperConstructor
from .bf16_amp_optim_wrapper import BF16AmpOptimWrapper

__all__ = ['BackboneLayerDecayOptimWrapperConstructor', 'BF16AmpOptimWrapper']
