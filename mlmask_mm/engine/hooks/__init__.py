from .mask_visualization_hook import MaskVisualizationHook
from .rng_state_hook import RNGStateHook

__all__ = ['MaskVisualizationHook', 'RNGStateHook']
