"""Helpers of the models: the encoder walk, the fused blocks, the MLO-MAE
hypergradient, Self-Guided MAE's exploitation rates, normalised cut and
relevance cache, the parts of a model trained in parts, and the mask
specificity every method logs."""
from .block_walk import BlockWalk, walk_blocks, walk_decoder
from .mask_specificity import mask_specificity
from .parts import part_of_children, split_into_parts

__all__ = [
    'BlockWalk', 'walk_blocks', 'walk_decoder', 'mask_specificity',
    'part_of_children', 'split_into_parts'
]
