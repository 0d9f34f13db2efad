from .curriculum_hook import CurriculumHook  # noqa: F401
from .finite_loss_hook import FiniteLossHook  # noqa: F401
from .mask_visualization_hook import MaskVisualizationHook
from .preemption_hook import PreemptionHook, TrainingStopped  # noqa: F401
from .rng_state_hook import RNGStateHook
from .self_guided_hook import SelfGuidedHook
from .skipped_images_hook import SkippedImagesHook  # noqa: F401
from .strict_pretrained_hook import StrictPretrainedHook  # noqa: F401

__all__ = ['MaskVisualizationHook', 'RNGStateHook', 'SelfGuidedHook']
