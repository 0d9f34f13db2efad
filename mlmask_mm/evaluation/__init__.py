from .mae_metrics import (attention_distance, bipartition_gap,
                          feature_variance, similarity_variance)

__all__ = [
    'attention_distance', 'bipartition_gap', 'feature_variance',
    'similarity_variance'
]
