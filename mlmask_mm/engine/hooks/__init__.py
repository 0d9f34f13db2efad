from .curriculum_hook import CurriculumHook  # noqa: F401
from .mask_visualization_hook import MaskVisualizationHook
from .rng_state_hook import RNGStateHook
from .self_guided_cache_hook import SelfGuidedCacheHook
from .self_guided_hook import SelfGuidedStartHook

__all__ = ['MaskVisualizationHook', 'RNGStateHook', 'SelfGuidedStartHook',
           'SelfGuidedCacheHook']
