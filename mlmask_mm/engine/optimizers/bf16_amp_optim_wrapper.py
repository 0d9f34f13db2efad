"""mmengine's ``AmpOptimWrapper`` without a loss scaler for bfloat16.

A dynamic loss scaler exists for float16, whose 5-bit exponent underflows
small gradients.  bfloat16 has float32's 8-bit exponent, so scaling changes
nothing there, yet mmengine's ``AmpOptimWrapper`` keeps a ``GradScaler`` for
any dtype: every step it multiplies the loss, unscales every gradient
(a pass over all of them) and checks for inf/NaN, which ``GradScaler.step``
reads back to the host (one device sync per iteration).  This wrapper is
``AmpOptimWrapper`` with the scaler turned off when ``dtype='bfloat16'``
(``GradScaler(enabled=False)``: ``scale`` returns the loss, ``step`` is
``optimizer.step()``); with float16 it is ``AmpOptimWrapper`` unchanged.
Checkpoints of either load in either (a disabled scaler ignores the saved
scale).
"""
import torch
from mmengine.optim import AmpOptimWrapper

from mlmask_mm.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class BF16AmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` whose loss scaler is off in bfloat16.

    Args:
        loss_scale: as ``AmpOptimWrapper`` for float16; with bfloat16 only
            the default ``'dynamic'`` (it is then turned off), any other
            value is refused.
        dtype: ``'bfloat16'``, ``'float16'`` or ``None`` (autocast's
            default, float16 on CUDA).
    """

    def __init__(self, loss_scale='dynamic', dtype=None, **kwargs) -> None:
        bf16 = dtype in ('bfloat16', torch.bfloat16)
        if bf16 and loss_scale != 'dynamic':
            raise ValueError(
                f'optim_wrapper.loss_scale={loss_scale!r} with dtype='
                'bfloat16: bfloat16 needs no loss scaling (float32\'s '
                'exponent range); remove loss_scale')
        super().__init__(loss_scale=loss_scale, dtype=dtype, **kwargs)
        if bf16:
            self.loss_scaler = torch.amp.GradScaler('cuda', enabled=False)
