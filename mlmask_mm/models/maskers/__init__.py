"""Maskers: one file per strategy, all behind :class:`BaseMasker`."""
from .base import (BaseMasker, MaskContext, MaskResult, check_mask_ratio,
                   mask_from_ranking, num_visible)
from .block_masker import BlockMasker
from .composite_masker import CompositeMasker
from .curriculum_masker import CurriculumMasker  # noqa: F401
from .grid_masker import GridMasker
from .mlo_masker import MLOMLPMasker, MLOTokenMasker, ProbabilityMasker
from .random_masker import RandomMasker
from .region_masker import RegionMasker
from .self_guided_masker import InformedMaskContext, SelfGuidedMasker

__all__ = [
    'BaseMasker', 'MaskContext', 'MaskResult', 'check_mask_ratio',
    'mask_from_ranking', 'num_visible', 'RandomMasker', 'BlockMasker',
    'GridMasker', 'RegionMasker', 'CompositeMasker', 'SelfGuidedMasker',
    'InformedMaskContext',
    'ProbabilityMasker', 'MLOMLPMasker', 'MLOTokenMasker'
]
