from .curriculum_hook import CurriculumHook  # noqa: F401
from .finite_loss_hook import FiniteLossHook  # noqa: F401
from .mask_visualization_hook import MaskVisualizationHook
from .rng_state_hook import RNGStateHook
from .self_guided_cache_hook import SelfGuidedCacheHook
from .self_guided_hook import SelfGuidedStartHook
from .skipped_images_hook import SkippedImagesHook  # noqa: F401

__all__ = ['MaskVisualizationHook', 'RNGStateHook', 'SelfGuidedStartHook',
           'SelfGuidedCacheHook']
