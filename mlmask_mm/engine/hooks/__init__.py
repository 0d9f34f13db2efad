from .mask_visualization_hook import MaskVisualizationHook

__all__ = ['MaskVisualizationHook']
