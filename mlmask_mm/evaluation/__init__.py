from .feature_extractor import (POOLINGS, FrozenFeatureExtractor,
                                backbone_state_dict, build_frozen_extractor,
                                embedded_config, extract_features,
                                extractor_config, folder_dataset, image_size,
                                load_backbone_weights, load_checkpoint_safely,
                                load_config)
from .fewshot_metric import FewShotLinearProbe
from .fewshot import (NORMALIZATIONS, check_shots, few_shot_accuracies,
                      mean_std, normalize_features, sample_few_shot,
                      topk_accuracy, train_linear_classifier)
from .mae_metrics import (attention_distance, bipartition_gap,
                          feature_variance, similarity_variance)

__all__ = [
    'attention_distance', 'bipartition_gap', 'feature_variance',
    'similarity_variance', 'POOLINGS', 'FrozenFeatureExtractor',
    'backbone_state_dict', 'build_frozen_extractor', 'embedded_config',
    'extract_features', 'extractor_config', 'folder_dataset', 'image_size',
    'load_backbone_weights', 'load_checkpoint_safely', 'load_config',
    'NORMALIZATIONS', 'FewShotLinearProbe',
    'check_shots', 'few_shot_accuracies', 'mean_std', 'normalize_features',
    'sample_few_shot', 'topk_accuracy', 'train_linear_classifier'
]
