"""A first-order stand-in for ``MLOMAE.outer_step`` (loop tests only).

It honours the contract of the MLO-MAE loop (see
``mlmask_mm/engine/loops/mlo_loop.py``): three data batches in, the three
optimizers of the ``OptimWrapperDict`` stepped, gradients averaged over the
processes, detached log variables out.  The hypergradient itself is replaced
by the first-order gradient of a probability-weighted reconstruction loss on
the level-3 images, so that the loop's tests do not depend on the math under
test in ``tests/test_mlo_*`` of the algorithm.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce_params, get_world_size

from mlmask_mm.models.algorithms.masked_mae import MaskedMAE
from mlmask_mm.models.maskers.base import BaseMasker, mask_from_ranking
from mlmask_mm.registry import MODELS


@MODELS.register_module(force=True)
class LoopTestScoreMasker(BaseMasker):
    """p_i = sigmoid(w · token_i + b); the ⌈rL⌉ highest p are masked."""

    def __init__(self, embed_dims: int, mask_ratio: float = 0.75) -> None:
        super().__init__(mask_ratio=mask_ratio)
        self.score = nn.Linear(embed_dims, 1)

    def forward(self, tokens, images=None, context=None):
        p = torch.sigmoid(self.score(tokens.detach())).squeeze(-1)
        result = mask_from_ranking(-p.detach(), self.num_keep(p.shape[1]))
        result.scores = p
        return result


@MODELS.register_module(force=True)
class LoopTestMLO(MaskedMAE):
    """MaskedMAE + ``downstream_head`` + a first-order ``outer_step``."""

    def __init__(self, downstream_head: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.downstream_head = MODELS.build(downstream_head)

    def weighted_loss(self, inputs) -> torch.Tensor:
        """Σ m·p·ℓ / Σ m with ℓ the per-patch MSE to normalised pixels."""
        tokens, result = self.mask(inputs)
        pred = self.reconstruct(tokens, result)
        target = self.head.construct_target(inputs)
        per_patch = ((pred - target)**2).mean(dim=-1)
        m = result.mask
        return (m * result.scores * per_patch).sum() / m.sum()

    def features(self, inputs) -> torch.Tensor:
        tokens = self.backbone.embed(inputs)
        B, L = tokens.shape[:2]
        every = torch.arange(L, device=inputs.device).expand(B, L)
        return self.backbone.encode_visible(tokens, every)[:, 1:].mean(dim=1)

    def head_loss(self, batch) -> torch.Tensor:
        data = self.data_preprocessor(batch, True)
        with torch.no_grad():
            feats = self.features(data['inputs'])
        labels = torch.cat([s.gt_label for s in data['data_samples']])
        logits = self.downstream_head.fc(feats)
        return F.cross_entropy(logits, labels)

    @staticmethod
    def _step(wrapper, loss, params) -> None:
        wrapper.zero_grad()
        loss.backward()
        if get_world_size() > 1:
            all_reduce_params(
                [p.grad for p in params if p.grad is not None], op='mean')
        wrapper.step()
        wrapper.zero_grad()

    def outer_step(self, mae_batch: dict, train_batch: dict,
                   val_batch: Optional[dict], optim_wrapper,
                   update_masker: bool) -> Dict[str, torch.Tensor]:
        mae_params = [p for n, p in self.named_parameters()
                      if not n.startswith(('masker.', 'downstream_head.'))]
        data = self.data_preprocessor(mae_batch, True)
        loss_mae = self.weighted_loss(data['inputs'])
        self._step(optim_wrapper['mae'], loss_mae, mae_params)
        loss_head = self.head_loss(train_batch)
        self._step(optim_wrapper['head'], loss_head,
                   list(self.downstream_head.parameters()))
        log = dict(loss_mae=loss_mae.detach(), loss_head=loss_head.detach())
        if update_masker:
            assert val_batch is not None
            val = self.data_preprocessor(val_batch, True)
            loss_val = self.weighted_loss(val['inputs'])
            self._step(optim_wrapper['masker'], loss_val,
                       list(self.masker.parameters()))
            log['loss_val'] = loss_val.detach()
        return log
