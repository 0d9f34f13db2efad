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
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Tuple

import torch

from . import safe_checkpoint

TARGETS = ('mmpretrain', 'mmseg')

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


def convert_state_dict(state_dict: Dict[str, torch.Tensor],
                       target: str = 'mmpretrain',
                       source: str = 'checkpoint'
                       ) -> 'OrderedDict[str, torch.Tensor]':
    """Backbone-only state dict in the key layout of ``target``."""
    if target not in TARGETS:
        raise ValueError(f'target={target!r} is not one of {TARGETS}')
    backbone = backbone_state_dict(state_dict, source)
    check_vit_keys(backbone, source)
    return to_mmseg_vit(backbone) if target == 'mmseg' else backbone


def convert_checkpoint(src: str, dst: str, target: str = 'mmpretrain') -> dict:
    """Write ``dst`` = ``{'state_dict': backbone keys, 'meta': {...}}``.

    Returns the meta written (source file, target, number of tensors, the
    pretraining algorithm's iteration/epoch when the source records it).
    """
    state_dict, meta = load_pretraining_state_dict(src)
    converted = convert_state_dict(state_dict, target, source=src)
    dropped = sorted({k.split('.')[0] for k in state_dict
                      if not k.startswith(('backbone.', 'module.backbone.'))})
    out_meta = dict(
        converted_from=osp.abspath(src), target=target,
        num_tensors=len(converted), dropped_prefixes=dropped)
    for key in ('iter', 'epoch', 'experiment_name'):
        if isinstance(meta.get(key), (int, str)):
            out_meta[key] = meta[key]
    dst_dir = osp.dirname(osp.abspath(dst))
    if not osp.isdir(dst_dir):
        raise FileNotFoundError(f'output folder {dst_dir!r} does not exist')
    torch.save({'state_dict': converted, 'meta': out_meta}, dst)
    return out_meta
