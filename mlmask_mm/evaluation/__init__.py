"""Evaluation: the mmengine components (the few-shot metric, the frozen
feature extractor), the few-shot protocol ``tools/analysis_tools/fewshot.py`` runs, and the
MAE analysis metrics.  Helpers below these live in the submodules."""
from .feature_extractor import (POOLINGS, FrozenFeatureExtractor,
                                build_frozen_extractor, embedded_config,
                                extract_features, extractor_config,
                                folder_dataset, image_size,
                                load_checkpoint_safely, load_config)
from .fewshot import NORMALIZATIONS, check_shots, few_shot_accuracies, mean_std
from .fewshot_metric import FewShotLinearProbe
from .mae_metrics import (attention_distance, bipartition_gap,
                          feature_variance, similarity_variance)
from .mask_content import mask_content_test, model_mask_fn

__all__ = [
    # mmengine components
    'FewShotLinearProbe', 'FrozenFeatureExtractor',
    # the few-shot protocol (tools/analysis_tools/fewshot.py)
    'NORMALIZATIONS', 'POOLINGS', 'build_frozen_extractor', 'check_shots',
    'embedded_config', 'extract_features', 'extractor_config',
    'few_shot_accuracies', 'folder_dataset', 'image_size',
    'load_checkpoint_safely', 'load_config', 'mean_std',
    # MAE analysis metrics (tools/analysis_tools/sg_analysis.py)
    'attention_distance', 'bipartition_gap', 'feature_variance',
    'similarity_variance',
    # do masks follow the image's content (tools/analysis_tools/
    # analyze_mask_content.py)
    'mask_content_test', 'model_mask_fn'
]
