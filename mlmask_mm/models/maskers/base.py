"""The one masking interface of mlmask_mm.

Every strategy is a *masker*: a registered module called as

    masker(tokens, images=None, context=None) -> MaskResult

``tokens`` are the B x L x D patch embeddings (position embedding added),
``images`` the B x C x H x W network input, ``context`` a :class:`MaskContext`
(patch grid, data samples; subclasses add what a strategy needs, e.g. the
relevance an algorithm computed).  The result says which patches
stay visible (``ids_keep``), how to undo the shuffle (``ids_restore``), the
binary ``mask`` (1 = masked, as in MAE) and, for strategies that learn from
them, per-patch ``scores``.

A masker only decides the mask.  A masker with parameters of its own is
trained by its *algorithm*, a :class:`~mlmask_mm.models.algorithms.MaskedMAE`
subclass, not by a hook or a loop: the algorithm declares its optimizer parts
(``optim_parts = dict(masker=('masker', ))``, ``default_optim_part = 'mae'``;
``optim_wrapper=dict(constructor='PartsOptimWrapperConstructor', mae=...,
masker=...)`` builds one optimizer per part) and takes every step in its
``train_step`` (``CLMAE``; MLO-MAE's three levels: ``MLOMAE.outer_step``,
which ``MLOTrainLoop`` feeds with data).  Under
:class:`~mlmask_mm.engine.parts.PartsDataParallel`, which does not
synchronise gradients, the algorithm averages them over the processes with
:func:`~mlmask_mm.utils.dist.average_over_ranks` before each optimizer step;
the wrapper stops a run whose processes' parameters differ (README, "Adding
a masker").
"""
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
from mmengine.model import BaseModule


@dataclass
class MaskResult:
    """Output of a masker.

    Attributes:
        ids_keep: B x K indices of the visible patches, K = int(L (1 - r)).
        ids_restore: B x L permutation that undoes the keep-first shuffle.
        mask: B x L, 1 = masked, 0 = visible (float, like mmpretrain's MAE).
        scores: optional B x L per-patch scores/probabilities (the learned
            maskers' output; differentiable for methods that learn from it).
    """
    ids_keep: torch.Tensor
    ids_restore: torch.Tensor
    mask: torch.Tensor
    scores: Optional[torch.Tensor] = None


@dataclass
class MaskContext:
    """What a masker may know besides the tokens.

    Plain data, no back-reference to the model: an algorithm that computes
    something for its masker (e.g. Self-Guided MAE's relevance) passes it as
    a tensor in a subclass (``InformedMaskContext``).

    Attributes:
        patch_resolution: (h, w) of the patch grid, h * w = L.
        data_samples: the batch's data samples (per-image masks, labels...).
    """
    patch_resolution: Tuple[int, int]
    data_samples: Optional[List[Any]] = None


def check_mask_ratio(mask_ratio: float, name: str = 'mask_ratio') -> float:
    """Raise one clear error unless ``0 < mask_ratio < 1``."""
    if not isinstance(mask_ratio, (int, float)) or not 0 < mask_ratio < 1:
        raise ValueError(
            f'{name} must be in the open interval (0, 1), got {mask_ratio!r}')
    return float(mask_ratio)


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """K = int(L (1 - r)), the visible count of mmpretrain's / MAE's code."""
    return int(num_patches * (1 - mask_ratio))


def mask_from_ranking(ranking: torch.Tensor, num_keep: int,
                      scores: Optional[torch.Tensor] = None) -> MaskResult:
    """Keep the ``num_keep`` patches with the *smallest* ranking value.

    This is MAE's ``random_masking`` with the noise replaced by any per-patch
    ranking (B x L): ``ids_shuffle = argsort(ranking)``, the first K are kept,
    ``ids_restore = argsort(ids_shuffle)``, ``mask = 1`` elsewhere.
    """
    B, L = ranking.shape
    ids_shuffle = torch.argsort(ranking, dim=1)  # ascending: small = keep
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :num_keep]
    mask = torch.ones(B, L, device=ranking.device)
    mask[:, :num_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return MaskResult(ids_keep, ids_restore, mask, scores)


class BaseMasker(BaseModule, metaclass=ABCMeta):
    """Base class of all maskers: holds the mask ratio, checks it once.

    Subclasses implement :meth:`forward` and return a :class:`MaskResult`
    whose visible count is exactly ``int(L * (1 - mask_ratio))`` for every
    image, so that batches stay rectangular.
    """

    def __init__(self, mask_ratio: float = 0.75, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.mask_ratio = check_mask_ratio(mask_ratio)

    def num_keep(self, num_patches: int) -> int:
        return num_visible(num_patches, self.mask_ratio)

    @abstractmethod
    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        """Return the :class:`MaskResult` for a batch of patch tokens."""

    def extra_repr(self) -> str:
        return f'mask_ratio={self.mask_ratio}'
