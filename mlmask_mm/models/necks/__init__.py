from .fast_mae_decoder import FastMAEPretrainDecoder
from .simple_feature_pyramid import SimpleFeaturePyramid

__all__ = ['FastMAEPretrainDecoder', 'SimpleFeaturePyramid']
