"""mmpretrain's ``TransformerEncoderLayer`` run as one fused function.

The same pre-norm block as mmpretrain (``vision_transformer.py``,
``TransformerEncoderLayer.forward``; ``MultiheadAttention.forward`` in
``models/utils/attention.py``), on the layer's own parameters:

    x ← x + W_o · SDPA(split_heads(W_qkv · LN₁(x) + b_qkv)) + b_o
    x ← x + W₂ · GELU(W₁ · LN₂(x) + b₁) + b₂

with one ``F.linear`` for q, k and v together,
``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where
the device has them) and no module calls, dropout or identity modules in
between.  The modules stay where they
are (same parameters, same state-dict keys, same ``init_weights``); only the
forward is replaced, so checkpoints load in mmpretrain, mmseg and mmdet
unchanged.  Dropout, stochastic depth and layer scale are not implemented:
:func:`check_fast_layers` refuses a block that uses them.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

def _drop_prob(module: nn.Module) -> float:
    """The drop probability of a dropout-like module (0 for Identity)."""
    if isinstance(module, nn.Identity):
        return 0.0
    return float(getattr(module, 'drop_prob', getattr(module, 'p', 0.0)))


def check_fast_layers(layers: Sequence[nn.Module], setting: str) -> None:
    """Raise one clear error unless every layer is a plain mmpretrain
    ``TransformerEncoderLayer`` the fused forward computes exactly."""
    from mmpretrain.models.backbones.vision_transformer import \
        TransformerEncoderLayer
    for i, layer in enumerate(layers):
        where = f'{setting}[{i}]'
        if type(layer) is not TransformerEncoderLayer:
            raise TypeError(f'{where}: the fast path runs mmpretrain\'s '
                            'TransformerEncoderLayer only, got '
                            f'{type(layer).__name__}')
        attn, ffn = layer.attn, layer.ffn
        problems = []
        if not isinstance(layer.ln1, nn.LayerNorm) or not isinstance(
                layer.ln2, nn.LayerNorm):
            problems.append('norm_cfg must be LayerNorm (type=LN)')
        if attn.input_dims != attn.embed_dims or attn.v_shortcut:
            problems.append('attention input_dims/v_shortcut')
        if attn.scaled_dot_product_attention is not \
                F.scaled_dot_product_attention:
            problems.append('attention qk_scale (or a torch without SDPA)')
        if attn.attn_drop or _drop_prob(attn.proj_drop) or _drop_prob(
                attn.out_drop):
            problems.append('attn_drop_rate / drop_rate / drop_path_rate '
                            'must be 0')
        if not isinstance(attn.gamma1, nn.Identity) or not isinstance(
                getattr(ffn, 'gamma2', nn.Identity()), nn.Identity):
            problems.append('layer_scale_init_value must be 0')
        fc = getattr(ffn, 'layers', None)
        if not (isinstance(fc, nn.Sequential) and len(fc) == 3
                and isinstance(fc[0], nn.Sequential) and len(fc[0]) == 3
                and isinstance(fc[0][0], nn.Linear)
                and isinstance(fc[1], nn.Linear)):
            problems.append('the FFN must be mmcv FFN with num_fcs=2')
        else:
            act = fc[0][1]
            if not (isinstance(act, nn.GELU) and act.approximate == 'none'):
                problems.append('the FFN activation must be GELU')
            if _drop_prob(fc[0][2]) or _drop_prob(fc[2]) or _drop_prob(
                    ffn.dropout_layer):
                problems.append('drop_rate / drop_path_rate must be 0')
        if not getattr(ffn, 'add_identity', True):
            problems.append('the FFN must add its identity')
        if problems:
            raise ValueError(
                f'{where}: not supported by the fast path: '
                + '; '.join(problems) + ' (use MaskableViT / '
                'MAEPretrainDecoder for this block)')


def check_compile(compile: Union[bool, str], setting: str) -> None:
    if not (compile is True or compile is False or compile == 'cuda'):
        raise ValueError(f'{setting}={compile!r}: choose False (eager), True '
                         "(always torch.compile) or 'cuda' (compile when the "
                         'input is on a CUDA device, eager on the CPU)')


def fast_layer(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """One ``TransformerEncoderLayer`` (pre-norm), fused: B x N x D."""
    B, N, D = x.shape
    attn, ffn = layer.attn, layer.ffn
    heads = attn.num_heads
    h = F.layer_norm(x, (D, ), layer.ln1.weight, layer.ln1.bias,
                     layer.ln1.eps)
    qkv = F.linear(h, attn.qkv.weight, attn.qkv.bias)
    q, k, v = qkv.view(B, N, 3, heads, D // heads).permute(2, 0, 3, 1,
                                                            4).unbind(0)
    a = F.scaled_dot_product_attention(q, k, v)
    x = x + F.linear(a.transpose(1, 2).reshape(B, N, D), attn.proj.weight,
                     attn.proj.bias)
    h = F.layer_norm(x, (D, ), layer.ln2.weight, layer.ln2.bias,
                     layer.ln2.eps)
    fc1, fc2 = ffn.layers[0][0], ffn.layers[1]
    h = F.gelu(F.linear(h, fc1.weight, fc1.bias))
    return x + F.linear(h, fc2.weight, fc2.bias)


def fast_layers(x: torch.Tensor, layers: Sequence[nn.Module]) -> torch.Tensor:
    for layer in layers:
        x = fast_layer(x, layer)
    return x


class CompiledForward:
    """Calls ``fn(module, *args)`` eagerly or through ``torch.compile``.

    ``compile``: ``False`` eager; ``True`` compiled (``fullgraph=True``,
    static shapes: masking by gather keeps them fixed); ``'cuda'`` compiled
    when the first argument is a CUDA tensor, eager otherwise (the CPU runs
    of tests and debugging).  The compiled function is made lazily from the
    *unbound* ``fn``, takes the module as an argument and is no module
    itself, so the module tree, the state-dict keys, ``init_weights`` and a
    ``copy.deepcopy`` of the model are those of the eager model.
    """

    def __init__(self, fn, compile: Union[bool, str],
                 setting: str) -> None:
        check_compile(compile, setting)
        self.fn, self.mode, self.setting = fn, compile, setting
        self.compiled: Optional[object] = None

    def wants_compile(self, first: torch.Tensor) -> bool:
        return self.mode is True or (self.mode == 'cuda'
                                     and first.device.type == 'cuda')

    def __call__(self, module: nn.Module, *args):
        if not self.wants_compile(args[0]):
            return self.fn(module, *args)
        if self.compiled is None:
            self.compiled = torch.compile(self.fn, fullgraph=True,
                                          dynamic=False)
        return self.compiled(module, *args)

    def __deepcopy__(self, memo):
        return CompiledForward(self.fn, self.mode, self.setting)


def refuse_block_compile(layers: Sequence[nn.Module], setting: str) -> None:
    """The fast path does not call the blocks' modules, so a per-block
    ``nn.Module.compile`` (``MaskedMAE(compile=True)``) would do nothing."""
    for layer in layers:
        if getattr(layer, '_compiled_call_impl', None) is not None:
            raise ValueError(
                f'{setting}: the blocks are compiled one by one '
                '(model.compile=True), which the fast path never calls; '
                'drop model.compile and use the fast modules\' own '
                'compile (model.backbone.compile / model.neck.compile)')
