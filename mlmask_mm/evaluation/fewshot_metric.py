"""Few-shot linear probe as an mmengine metric (``test_evaluator``).

The evaluated model is a :class:`FrozenFeatureExtractor` (``mode='predict'``
puts one feature vector per image into each data sample) and the dataset a
:class:`~mlmask_mm.datasets.FewShotFolders` (support images first, their
number in ``metainfo['num_support']``).  For every n in ``shots`` and seed
s: n support images per class, a linear classifier on their features
(:func:`few_shot_accuracies`, the same code as
``tools/analysis_tools/fewshot.py``), top-1 / top-5 on the query images, mean ± std over the seeds (CL-MAE
supplementary, Table 1).
"""
import math
from typing import Dict, List, Sequence

import torch
from mmengine.evaluator import BaseMetric

from mlmask_mm.registry import METRICS

from .fewshot import NORMALIZATIONS, check_shots, few_shot_accuracies, mean_std


@METRICS.register_module()
class FewShotLinearProbe(BaseMetric):
    """Metrics ``fewshot/{n}shot_top1`` (mean over seeds), ``..._top1_std``,
    ``..._top5``, ``..._top5_std`` for every n in ``shots`` (no top-5 for 5
    classes or fewer), in %.

    Args:
        shots (Sequence[int]): samples per class. Defaults to 1, 2, 4, 8, 16.
        seeds (int): seeds 0 .. seeds-1 per n. Defaults to 3.
        normalize (str): ``'l2'`` or ``'none'`` feature normalisation.
        weight_decay (float): λ of the classifier. Defaults to 1e-4.
        max_iter (int): L-BFGS iterations. Defaults to 500.
    """
    default_prefix = 'fewshot'

    def __init__(self, shots: Sequence[int] = (1, 2, 4, 8, 16),
                 seeds: int = 3, normalize: str = 'l2',
                 weight_decay: float = 1e-4, max_iter: int = 500,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f'normalize={normalize!r}: expected one of '
                             f'{NORMALIZATIONS}')
        if not shots or min(shots) < 1 or seeds < 1:
            raise ValueError(f'shots={shots}, seeds={seeds}: need at least '
                             'one shot count >= 1 and seeds >= 1')
        self.shots, self.seeds = list(shots), list(range(seeds))
        self.normalize, self.weight_decay = normalize, weight_decay
        self.max_iter = max_iter

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'feature' not in sample:
                raise KeyError(
                    'FewShotLinearProbe needs a feature per sample: evaluate '
                    "a FrozenFeatureExtractor (mode='predict')")
            self.results.append(dict(
                idx=int(sample['sample_idx']),
                feature=sample['feature'].detach().float().cpu(),
                label=int(sample['gt_label'].item())))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        meta = self.dataset_meta or {}
        if 'num_support' not in meta or 'classes' not in meta:
            raise KeyError('FewShotLinearProbe needs a FewShotFolders '
                           "dataset (metainfo 'classes', 'num_support')")
        results = sorted(results, key=lambda r: r['idx'])
        support = [r for r in results if r['idx'] < meta['num_support']]
        query = [r for r in results if r['idx'] >= meta['num_support']]
        classes = meta['classes']
        labels = [r['label'] for r in support]
        check_shots(labels, classes, max(self.shots), 'support split')
        features = torch.stack([r['feature'] for r in support])
        q_features = torch.stack([r['feature'] for r in query])
        q_labels = [r['label'] for r in query]
        metrics = {}
        for n in self.shots:
            accs = few_shot_accuracies(
                features, labels, q_features, q_labels, classes, n,
                self.seeds, self.normalize, self.weight_decay, self.max_iter)
            for k, values in (('top1', [a for a, _ in accs]),
                              ('top5', [b for _, b in accs])):
                mean, std = mean_std(values)
                if math.isnan(mean):  # top-5 of 5 classes or fewer
                    continue
                metrics[f'{n}shot_{k}'] = mean
                metrics[f'{n}shot_{k}_std'] = std
        return metrics
