from .curriculum_hook import CurriculumHook  # noqa: F401
from .mask_visualization_hook import MaskVisualizationHook
from .rng_state_hook import RNGStateHook
from .self_guided_hook import SelfGuidedHook

__all__ = ['MaskVisualizationHook', 'RNGStateHook', 'SelfGuidedHook']
