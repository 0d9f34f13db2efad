"""The official MLO-MAE code's level-2 head (Guo et al., App. B.3)."""
from typing import Sequence

from mmpretrain.models.heads import ClsHead
from torch import Tensor, nn

from mlmask_mm.registry import MODELS


@MODELS.register_module()
class MLOClsHead(ClsHead):
    """The official code's level-2 head: LayerNorm → Dropout → Linear.

        logits = W · dropout(LN(f)) + b

    on the encoder's class token (use with ``MLOMAE(feature='cls')``).
    mmpretrain's ``LinearClsHead`` is the plain linear head (the default).
    Initialised as the official ``FinetuneVisionTransformer``
    (``cifar_vit_mlo.py`` l. 9-35, built standalone in ``main_cifar10.py``
    l. 297): PyTorch's defaults, W ~ U(±1/√D) (std 1/√(3D) = 0.021 at
    D = 768), LayerNorm (1, 0); not the MAE's Xavier (std 0.051 at 768).

    Args:
        num_classes, in_channels: classes and feature width.
        dropout: dropout probability (0.1 in the official code).
        loss, topk, init_cfg: as mmpretrain's ``ClsHead``.
    """

    def __init__(self, num_classes: int, in_channels: int,
                 dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 <= dropout < 1:
            raise ValueError(f'MLOClsHead dropout must be in [0, 1), got '
                             f'{dropout!r}')
        self.num_classes, self.in_channels = num_classes, in_channels
        self.norm = nn.LayerNorm(in_channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def init_weights(self) -> None:
        """PyTorch's default initialisation (``reset_parameters``) unless
        an ``init_cfg`` is given."""
        if self.init_cfg is not None:
            super().init_weights()
            return
        self.norm.reset_parameters()
        self.fc.reset_parameters()
        self._is_init = True

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return self.fc(self.dropout(self.norm(self.pre_logits(feats))))
