"""MLO-MAE's masking networks (Guo et al., §4.1 and App. B.2).

A masking network maps the patch embeddings (position embedding added) to
p_i ∈ (0, 1), the probability that patch i is masked.  The mask is the
deterministic top-k: the L − K patches with the largest p are masked and
the K = int(L (1 − r)) with the smallest stay visible (the visible count of
every masker, :func:`~.base.num_visible`; at r = 0.75 and L = 64, 196, 256
exactly int(r L) are masked).  ``MaskResult.scores`` is p, differentiable
w.r.t. the network's parameters φ: MLO-MAE's level-1 loss Σ m p ℓ / Σ m
depends on φ only through it, and φ learns from the hypergradient of the
downstream validation loss (:mod:`mlmask_mm.models.utils.hypergrad`), never
from this module's own loss.

The network's input is detached from the encoder by default: with it
attached, finite-difference hypergradients flip ReLU units between the ±ε
evaluations (docs/mlo_mae.md, "Numerical pitfalls").  With
``detach_input=False`` (the official code) p also depends on the encoder's
patch embedding, which then learns through p at level 1.

Two settings follow the official code (``Alexiland/MLO-MAE``,
``cifar_mae_model.py`` l. 124-143, built standalone in ``main_cifar10.py``
l. 293): the network keeps PyTorch's default ``nn.Linear`` /
``nn.LayerNorm`` initialisation (the MAE's Xavier ``init_cfg`` does not
reach it, see :meth:`ProbabilityMasker.init_weights`), and p is computed in
fp32 also under bf16 autocast (bf16 has 8 bits of mantissa: p near 0.5
would tie and the top-k would decide by index order).
"""
from abc import abstractmethod
from typing import Optional

import torch
from torch import nn

from mlmask_mm.registry import MODELS
from .base import BaseMasker, MaskContext, MaskResult, mask_from_ranking


class ProbabilityMasker(BaseMasker):
    """Masks the patches with the highest masking probability p.

    Args:
        mask_ratio: r; L − int(L (1 − r)) patches are masked per image.
        detach_input: feed ``tokens.detach()`` to the network (default).
    """

    def __init__(self, mask_ratio: float = 0.75, detach_input: bool = True,
                 init_cfg=None) -> None:
        super().__init__(mask_ratio=mask_ratio, init_cfg=init_cfg)
        self.detach_input = bool(detach_input)

    @abstractmethod
    def network(self, tokens: torch.Tensor) -> torch.Tensor:
        """B x L x D tokens → B x L masking probabilities p."""

    def probabilities(self, tokens: torch.Tensor) -> torch.Tensor:
        """p = ``network(tokens)`` with autocast off and half-precision
        tokens cast to fp32 (the official code runs the network in fp32)."""
        if tokens.dtype in (torch.float16, torch.bfloat16):
            tokens = tokens.float()
        with torch.autocast(tokens.device.type, enabled=False):
            return self.network(tokens)

    def init_weights(self) -> None:
        """PyTorch's default initialisation of every layer
        (``reset_parameters``: ``nn.Linear`` U(±1/√fan_in)), as the
        official network, which is built outside the MAE and never
        re-initialised; a masker ``init_cfg`` replaces it."""
        if self.init_cfg is not None:
            super().init_weights()
            return
        for m in self.modules():
            if m is not self and hasattr(m, 'reset_parameters'):
                m.reset_parameters()
        self._is_init = True

    def network_input(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.detach() if self.detach_input else tokens

    def forward(self,
                tokens: torch.Tensor,
                images: Optional[torch.Tensor] = None,
                context: Optional[MaskContext] = None) -> MaskResult:
        probs = self.probabilities(self.network_input(tokens))
        # keep the K smallest p, mask the rest (ties: argsort order)
        return mask_from_ranking(probs.detach(),
                                 self.num_keep(tokens.shape[1]), probs)

    def extra_repr(self) -> str:
        return (f'mask_ratio={self.mask_ratio}, '
                f'detach_input={self.detach_input}')


@MODELS.register_module()
class MLOMLPMasker(ProbabilityMasker):
    """The paper's masking network: one MLP over the whole flattened image.

        p = sigmoid(W2 ReLU(W1 vec(X) + b1) + b2),  X ∈ R^{L x D}

    Linear(L·D → hidden) → ReLU → Linear(hidden → L) → sigmoid, hidden = 512
    (App. B.2).  Its size grows with L·D: L·D·hidden + hidden·(L + 1) + L
    parameters, ~77.2 M at ViT-B/16, 224 px (L = 196, D = 768) and ~100.8 M
    at ViT-B, patch 2, 32 px (L = 256) — as large as the encoder itself.
    For large L use :class:`MLOTokenMasker`.

    Args:
        num_patches: L (fixed: the first layer reads all L·D values).
        embed_dims: D of the encoder's patch embeddings.
        hidden_dims: width of the hidden layer (512 in the paper).
    """

    def __init__(self, num_patches: int, embed_dims: int,
                 hidden_dims: int = 512, mask_ratio: float = 0.75,
                 detach_input: bool = True, init_cfg=None) -> None:
        super().__init__(mask_ratio, detach_input, init_cfg)
        for name, value in (('num_patches', num_patches),
                            ('embed_dims', embed_dims),
                            ('hidden_dims', hidden_dims)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'MLOMLPMasker {name} must be a positive '
                                 f'integer, got {value!r}')
        self.num_patches = num_patches
        self.embed_dims = embed_dims
        self.mlp = nn.Sequential(
            nn.Linear(num_patches * embed_dims, hidden_dims), nn.ReLU(),
            nn.Linear(hidden_dims, num_patches))

    def network(self, tokens: torch.Tensor) -> torch.Tensor:
        B, L, D = tokens.shape
        if (L, D) != (self.num_patches, self.embed_dims):
            raise ValueError(
                f'MLOMLPMasker was built for num_patches={self.num_patches}, '
                f'embed_dims={self.embed_dims} but got {L} patches of '
                f'{D} dims: set the masker to the backbone\'s patch grid '
                'and width')
        return torch.sigmoid(self.mlp(tokens.reshape(B, L * D)))


@MODELS.register_module()
class MLOTokenMasker(ProbabilityMasker):
    """Light masking network: the same small MLP on every token.

        p_i = sigmoid(w2ᵀ GELU(W1 LN(x_i) + b1) + b2)

    x_i carries its position embedding, so the network can learn both
    content and position preferences.  D·hidden + 2·hidden + 2D + 1
    parameters (~0.1 M at D = 768, hidden = 128), independent of L; cost
    linear in L.  Not the paper's network: it sees no other patch.

    Args:
        embed_dims: D of the encoder's patch embeddings.
        hidden_dims: width of the hidden layer.
    """

    def __init__(self, embed_dims: int, hidden_dims: int = 128,
                 mask_ratio: float = 0.75, detach_input: bool = True,
                 init_cfg=None) -> None:
        super().__init__(mask_ratio, detach_input, init_cfg)
        for name, value in (('embed_dims', embed_dims),
                            ('hidden_dims', hidden_dims)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'MLOTokenMasker {name} must be a positive '
                                 f'integer, got {value!r}')
        self.embed_dims = embed_dims
        self.mlp = nn.Sequential(
            nn.LayerNorm(embed_dims), nn.Linear(embed_dims, hidden_dims),
            nn.GELU(), nn.Linear(hidden_dims, 1))

    def network(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] != self.embed_dims:
            raise ValueError(
                f'MLOTokenMasker was built for embed_dims={self.embed_dims} '
                f'but got tokens of {tokens.shape[-1]} dims')
        return torch.sigmoid(self.mlp(tokens).squeeze(-1))
