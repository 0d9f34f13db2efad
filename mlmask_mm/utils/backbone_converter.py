"""Pretraining checkpoint → backbone-only checkpoint for transfer.

Every pretraining algorithm of this package (``MaskedMAE`` with any masker,
``CLMAE``, Self-Guided MAE, ...) keeps its encoder under ``backbone.``; the
decoder (``neck.``), the head and a learned masker (``masker.``) are dropped.
The encoder (``MaskableViT``) has the parameter names of mmpretrain's
``MAEViT`` / ``VisionTransformer``, so two key layouts are written:

* ``'mmpretrain'``: mmpretrain's ``VisionTransformer`` names, unchanged
  (``layers.N.attn.qkv``, ``layers.N.attn.proj``, ``ln1`` ...).  This is the
  backbone of this package's mmseg and mmdet configs
  (``type='mmpretrain.VisionTransformer'``) and of mmpretrain's classifiers.
* ``'mmseg'``: mmseg's own ``VisionTransformer`` (built with
  ``patch_bias=True, final_norm=True``), whose attention is an
  ``nn.MultiheadAttention``: ``attn.qkv.{weight,bias}`` →
  ``attn.attn.in_proj_{weight,bias}`` (the same [q; k; v] stacking) and
  ``attn.proj`` → ``attn.attn.out_proj``.  Nothing else is renamed.

The position embedding is written at its pretraining size; both backbones
interpolate it when the new image size differs (mmpretrain's
``VisionTransformer`` in its ``load_state_dict`` pre-hook, mmseg's in
``init_weights`` with ``init_cfg=dict(type='Pretrained', ...)``).

Two more targets feed the protocols behind published transfer numbers
(docs/transfer.md lists, for each, the keys dropped and the parameters that
start from their init):

* ``'mmseg-mae'``: mmseg's own ``MAE`` backbone (BEiT blocks; mmseg
  ``configs/mae``): the same names; the encoder's final norm ``ln1`` is
  dropped (the anchor puts no norm on the last output).  Layer scale
  ``gamma_1/gamma_2`` (init 1.0) and the relative position bias tables
  (init 0) are not in the checkpoint and start from their init: at init the
  backbone computes the encoder's features exactly.
* ``'vitdet'``: :class:`~mlmask_mm.models.backbones.ViTDet` (ViTDet's plain
  backbone, mmdet ``projects/ViTDet``): no class token (``cls_token`` and its
  position dropped, ``pos_embed`` reshaped to 1 x h x w x C), no final norm;
  the decomposed relative positions ``rel_pos_h/w`` start from 0.

The source may also be an mmpretrain classifier fine-tuned from such a
backbone (``configs/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py``:
``backbone.*`` + ``head.*``, with the pooled-feature norm ``ln2`` and no
final norm): ``head.*`` and ``ln2`` are dropped for the dense targets.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Tuple

import torch

from . import safe_checkpoint

TARGETS = ('mmpretrain', 'mmseg', 'mmseg-mae', 'vitdet')

#: mmpretrain ViT key (after ``backbone.``) → mmseg ViT key
_MMSEG_RENAMES = (
    (re.compile(r'^(layers\.\d+\.attn)\.qkv\.weight$'),
     r'\1.attn.in_proj_weight'),
    (re.compile(r'^(layers\.\d+\.attn)\.qkv\.bias$'), r'\1.attn.in_proj_bias'),
    (re.compile(r'^(layers\.\d+\.attn)\.proj\.(weight|bias)$'),
     r'\1.attn.out_proj.\2'),
)
#: keys mmseg's ViT has under the same name
_MMSEG_SAME = re.compile(
    r'^(cls_token|pos_embed|patch_embed\.projection\.(weight|bias)|'
    r'ln1\.(weight|bias)|'
    r'layers\.\d+\.(ln1|ln2)\.(weight|bias)|'
    r'layers\.\d+\.ffn\.layers\.(0\.0|1)\.(weight|bias))$')


def load_pretraining_state_dict(path: str) -> Tuple[Dict[str, torch.Tensor],
                                                    dict]:
    """(state_dict, meta) of an mmengine checkpoint, loaded weights-only."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    safe_checkpoint.install()
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f'checkpoint {path!r} holds a {type(ckpt).__name__}, '
                         'not a dict')
    state_dict = ckpt.get('state_dict', ckpt)
    meta = ckpt.get('meta', {}) if 'state_dict' in ckpt else {}
    return state_dict, meta if isinstance(meta, dict) else {}


def backbone_state_dict(checkpoint: Dict,
                        source: str = 'checkpoint',
                        bare_ok: bool = False
                        ) -> 'OrderedDict[str, torch.Tensor]':
    """The backbone's weights in a checkpoint, without the ``backbone.``
    prefix (everything else dropped).

    Args:
        checkpoint: a Runner checkpoint (``{'state_dict': ...}``) of any of
            this package's methods or of mmpretrain, or a state dict.
        source: how errors name it (e.g. the file).
        bare_ok: a state dict without ``backbone.*`` keys is taken as a
            backbone-only one (keys without prefix) instead of an error.

    A ``module.`` prefix (a DDP-wrapped model saved by hand) and the
    ``._orig_mod.`` of blocks compiled in training
    (``MaskedMAE(compile=True)``) are removed; non-tensor entries dropped.
    """
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'{source} holds no state dict')
    clean = OrderedDict()
    for key, value in state.items():
        if key.startswith('module.'):
            key = key[len('module.'):]
        if torch.is_tensor(value):
            clean[key.replace('._orig_mod.', '.')] = value
    out = OrderedDict((k[len('backbone.'):], v) for k, v in clean.items()
                      if k.startswith('backbone.'))
    if out:
        return out
    if bare_ok and clean:
        return clean
    raise ValueError(
        f'{source} has no "backbone." keys (first keys: '
        f'{list(state)[:5]}): expected a pretraining checkpoint of '
        'mlmask_mm (MaskedMAE, CLMAE, ...)')


def check_vit_keys(backbone: Dict[str, torch.Tensor],
                   source: str = 'checkpoint') -> None:
    """Raise unless the backbone has mmpretrain's ViT key names."""
    if 'patch_embed.projection.weight' not in backbone or not any(
            k.startswith('layers.') for k in backbone):
        raise ValueError(
            f'the backbone of {source} is not a ViT with mmpretrain\'s key '
            'names (no patch_embed.projection.weight / layers.N.*): '
            f'{list(backbone)[:5]}')


def to_mmseg_vit(backbone: Dict[str, torch.Tensor]
                 ) -> 'OrderedDict[str, torch.Tensor]':
    """Rename mmpretrain ViT keys to mmseg's ``VisionTransformer`` keys."""
    out = OrderedDict()
    for key, value in backbone.items():
        for pattern, repl in _MMSEG_RENAMES:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            if not _MMSEG_SAME.match(key):
                raise ValueError(
                    f'backbone key {key!r} has no counterpart in mmseg\'s '
                    'VisionTransformer: convert with --target mmpretrain and '
                    'use type="mmpretrain.VisionTransformer" instead')
            out[key] = value
    return out


#: keys mmseg's ``MAE`` backbone has under the same name
_MMSEG_MAE_SAME = re.compile(
    r'^(cls_token|pos_embed|patch_embed\.projection\.(weight|bias)|'
    r'layers\.\d+\.(ln1|ln2)\.(weight|bias)|'
    r'layers\.\d+\.attn\.(qkv|proj)\.(weight|bias)|'
    r'layers\.\d+\.ffn\.layers\.(0\.0|1)\.(weight|bias))$')
#: keys ViTDet's backbone has under the same name (besides ``pos_embed``)
_VITDET_SAME = re.compile(
    r'^(patch_embed\.projection\.(weight|bias)|'
    r'layers\.\d+\.(ln1|ln2)\.(weight|bias)|'
    r'layers\.\d+\.attn\.(qkv|proj)\.(weight|bias)|'
    r'layers\.\d+\.ffn\.layers\.(0\.0|1)\.(weight|bias))$')
#: encoder keys that no dense backbone takes: the final norm of a
#: pretraining encoder (``ln1``) and the pooled-feature norm of a fine-tuned
#: classifier (``ln2``, mmpretrain ``out_type='avg_featmap'``)
_HEAD_NORMS = ('ln1.weight', 'ln1.bias', 'ln2.weight', 'ln2.bias')

#: parameters of each target that no checkpoint holds: they start from their
#: init (regular expressions over the backbone's parameter names)
NEW_PARAMS = {
    'mmpretrain': (),
    'mmseg': (),
    'mmseg-mae': (r'layers\.\d+\.gamma_[12]',
                  r'layers\.\d+\.attn\.relative_position_bias_table'),
    'vitdet': (r'layers\.\d+\.attn\.rel_pos_[hw]', ),
}


def _rename_checked(backbone, pattern, target):
    """Keep the keys ``pattern`` accepts; raise on any other key."""
    for key in backbone:
        if not pattern.match(key):
            raise ValueError(
                f'backbone key {key!r} has no counterpart in the '
                f'{target!r} layout')
    return OrderedDict(backbone)


def to_mmseg_mae(backbone: Dict[str, torch.Tensor]
                 ) -> 'OrderedDict[str, torch.Tensor]':
    """mmpretrain ViT keys → mmseg ``MAE`` keys (final / pooled norm
    dropped; layer scale and relative position tables not written)."""
    kept = OrderedDict(
        (k, v) for k, v in backbone.items() if k not in _HEAD_NORMS)
    return _rename_checked(kept, _MMSEG_MAE_SAME, 'mmseg-mae')


def to_vitdet(backbone: Dict[str, torch.Tensor]
              ) -> 'OrderedDict[str, torch.Tensor]':
    """mmpretrain ViT keys → ViTDet backbone keys: no class token, the
    position embedding of the patches as 1 x h x w x C."""
    kept = OrderedDict(
        (k, v) for k, v in backbone.items()
        if k not in _HEAD_NORMS and k not in ('cls_token', 'pos_embed'))
    out = _rename_checked(kept, _VITDET_SAME, 'vitdet')
    pos = backbone.get('pos_embed')
    if pos is None:
        raise ValueError('the backbone has no pos_embed: ViTDet needs the '
                         'absolute position embedding')
    patches = pos[:, 1:] if 'cls_token' in backbone else pos
    side = int(round(patches.shape[1]**0.5))
    if side * side != patches.shape[1]:
        raise ValueError(
            f'pos_embed has {patches.shape[1]} patch positions, not a '
            'square grid')
    out['pos_embed'] = patches.reshape(1, side, side, -1).contiguous()
    return out


_CONVERTERS = {
    'mmseg': to_mmseg_vit,
    'mmseg-mae': to_mmseg_mae,
    'vitdet': to_vitdet,
}


def convert_state_dict(state_dict: Dict[str, torch.Tensor],
                       target: str = 'mmpretrain',
                       source: str = 'checkpoint'
                       ) -> 'OrderedDict[str, torch.Tensor]':
    """Backbone-only state dict in the key layout of ``target``."""
    if target not in TARGETS:
        raise ValueError(f'target={target!r} is not one of {TARGETS}')
    backbone = backbone_state_dict(state_dict, source)
    check_vit_keys(backbone, source)
    if target == 'mmpretrain':
        return backbone
    return _CONVERTERS[target](backbone)


def convert_checkpoint(src: str, dst: str, target: str = 'mmpretrain') -> dict:
    """Write ``dst`` = ``{'state_dict': backbone keys, 'meta': {...}}``.

    Returns the meta written (source file, target, number of tensors, the
    pretraining algorithm's iteration/epoch when the source records it).
    """
    state_dict, meta = load_pretraining_state_dict(src)
    converted = convert_state_dict(state_dict, target, source=src)
    dropped = sorted({k.split('.')[0] for k in state_dict
                      if not k.startswith(('backbone.', 'module.backbone.'))})
    backbone = backbone_state_dict(state_dict, src)
    dropped_keys = sorted(set(backbone) - set(converted) - {'pos_embed'})
    out_meta = dict(
        converted_from=osp.abspath(src), target=target,
        num_tensors=len(converted), dropped_prefixes=dropped,
        dropped_backbone_keys=dropped_keys,
        new_params=list(NEW_PARAMS[target]))
    for key in ('iter', 'epoch', 'experiment_name'):
        if isinstance(meta.get(key), (int, str)):
            out_meta[key] = meta[key]
    dst_dir = osp.dirname(osp.abspath(dst))
    if not osp.isdir(dst_dir):
        raise FileNotFoundError(f'output folder {dst_dir!r} does not exist')
    torch.save({'state_dict': converted, 'meta': out_meta}, dst)
    return out_meta
