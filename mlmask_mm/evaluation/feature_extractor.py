"""Frozen ViT features for linear probing (CL-MAE supplementary, Table 1).

A pretrained encoder is evaluated without changing it: every image gives one
feature vector, either the class token or the mean of the patch tokens, both
taken after the encoder's final LayerNorm (MAE's ``norm1``/``ln1``):

    f_cls(x)  = LN(z_L(x))[0]
    f_mean(x) = 1/L · Σ_{i=1..L} LN(z_L(x))[i]

:class:`FrozenFeatureExtractor` wraps the backbone of any pretraining config
(``MaskableViT`` of this package's MAE / CL-MAE / MLO-MAE, mmpretrain's
``MAEViT`` or ``VisionTransformer``); :func:`load_backbone_weights` fills it
from a checkpoint's ``backbone.*`` keys (weights-only loading, strict).
"""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import BaseModel
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.selfsup.mae import MAEViT
from mmpretrain.structures import DataSample

from mlmask_mm.registry import MODELS
from mlmask_mm.utils.backbone_converter import backbone_state_dict

POOLINGS = ('cls_token', 'mean_patch')
#: ImageNet statistics (0-255 RGB), used when a config names none
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f'pooling={pooling!r}: choose one of {POOLINGS}')


@MODELS.register_module()
class FrozenFeatureExtractor(BaseModel):
    """A frozen ViT backbone that maps images to one feature vector each.

    Args:
        backbone (dict): the backbone config (e.g. ``cfg.model.backbone`` of a
            pretraining config); it is built with ``out_type='raw'``.
        pooling (str): ``'cls_token'`` or ``'mean_patch'`` (see module doc).
        data_preprocessor (dict, optional): normalisation of the images,
            default mmpretrain's ``ClsDataPreprocessor`` with ImageNet
            statistics.
    """

    def __init__(self, backbone: dict, pooling: str = 'cls_token',
                 data_preprocessor: Optional[dict] = None) -> None:
        check_pooling(pooling)
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='ClsDataPreprocessor', mean=IMAGENET_MEAN,
                std=IMAGENET_STD, to_rgb=True)
        super().__init__(data_preprocessor=data_preprocessor)
        backbone = dict(backbone)
        backbone['out_type'] = 'raw'
        backbone.pop('init_cfg', None)  # weights come from load_backbone_..
        self.backbone = MODELS.build(backbone)
        if not isinstance(self.backbone, VisionTransformer):
            raise TypeError(
                f'backbone type={backbone.get("type")!r} is not a Vision '
                'Transformer (mmpretrain VisionTransformer / MAEViT / '
                'MaskableViT): cannot pool a class token or patch tokens')
        if pooling == 'cls_token' and not self.backbone.with_cls_token:
            raise ValueError('pooling=cls_token but the backbone has no '
                             'class token: use pooling=mean_patch')
        self.pooling = pooling
        self.freeze()

    def freeze(self) -> None:
        """No gradients, evaluation mode (dropout / drop-path off)."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        # the encoder stays in eval mode whatever a caller asks
        return super().train(False)

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W normalised images → B x D features."""
        if isinstance(self.backbone, MAEViT):
            tokens = self.backbone(inputs, mask=None)[-1]
        else:
            tokens = self.backbone(inputs)[-1]
        if self.pooling == 'cls_token':
            return tokens[:, 0]
        return tokens[:, self.backbone.num_extra_tokens:].mean(dim=1)

    def forward(self, inputs: torch.Tensor, data_samples=None,
                mode: str = 'tensor'):
        """``'tensor'``: B x D features; ``'predict'``: the data samples,
        each with its ``feature`` (for :class:`FewShotLinearProbe`)."""
        if mode not in ('tensor', 'predict'):
            raise ValueError(f'FrozenFeatureExtractor: mode={mode!r}; only '
                             "'tensor' and 'predict' (features) are "
                             'supported: it does not train')
        with torch.no_grad():
            features = self.extract_feat(inputs)
        if mode == 'tensor':
            return features
        if data_samples is None:
            data_samples = [DataSample() for _ in range(len(features))]
        for sample, feature in zip(data_samples, features):
            sample.set_field(feature, 'feature')
        return data_samples


def load_backbone_weights(model: FrozenFeatureExtractor,
                          checkpoint_path: str) -> None:
    """Load a checkpoint's backbone into ``model`` (weights-only, strict).

    Every backbone key must be present and no key may be left over; a
    different patch grid is handled by the backbone's position-embedding
    resize hook (mmpretrain's ``_prepare_pos_embed``).
    """
    checkpoint = load_checkpoint_safely(checkpoint_path)
    state = backbone_state_dict(checkpoint, checkpoint_path, bare_ok=True)
    result = model.backbone.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f'{checkpoint_path}: the backbone keys do not match the '
            f'architecture of the config: missing {result.missing_keys[:8]}'
            f'{" ..." if len(result.missing_keys) > 8 else ""}, unexpected '
            f'{result.unexpected_keys[:8]}'
            f'{" ..." if len(result.unexpected_keys) > 8 else ""} (pass the '
            'pretraining config of this checkpoint with --config)')
    model.freeze()


def load_checkpoint_safely(path: str) -> Dict:
    """``torch.load`` with ``weights_only=True`` (mmengine's types are
    allowlisted by :mod:`mlmask_mm.utils.safe_checkpoint`)."""
    from mlmask_mm.utils import safe_checkpoint
    safe_checkpoint.install()
    return torch.load(path, map_location='cpu', weights_only=True)


def embedded_config(checkpoint: Dict) -> Optional[Config]:
    """The config a Runner wrote into ``checkpoint['meta']['cfg']``."""
    text = (checkpoint.get('meta') or {}).get('cfg') if isinstance(
        checkpoint, dict) else None
    if not text:
        return None
    return Config.fromstring(text, file_format='.py')


def load_config(path: str) -> Config:
    """``Config.fromfile``, also for an installed package's config named
    ``package::path`` (e.g. ``mmpretrain::mae/mae_vit-base-p16_8xb512-amp-
    coslr-400e_in1k.py``), without installing anything."""
    if '::' not in path:
        return Config.fromfile(path)
    from mmengine.config.utils import (_get_external_cfg_base_path,
                                       _get_package_and_cfg_path)
    from mmengine.utils import get_installed_path, is_installed
    package, rel = _get_package_and_cfg_path(path)
    if not is_installed(package):
        raise FileNotFoundError(f'config {path!r}: package {package!r} is '
                                'not installed')
    return Config.fromfile(
        _get_external_cfg_base_path(get_installed_path(package), rel))


def extractor_config(cfg: Config, pooling: str) -> dict:
    """The :class:`FrozenFeatureExtractor` config for a pretraining config:
    its ``model.backbone`` and the mean / std of its data preprocessor."""
    model = cfg.get('model') or {}
    backbone = model.get('backbone')
    if not backbone:
        raise ValueError('the config has no model.backbone: pass the '
                         'pretraining config that built the checkpoint')
    pre = model.get('data_preprocessor') or cfg.get('data_preprocessor') \
        or {}
    scope = model.get('_scope_') or cfg.get('default_scope')
    backbone = _plain(backbone)
    if scope and '.' not in backbone['type'] and scope != 'mlmask_mm':
        backbone['type'] = f'{scope}.{backbone["type"]}'
    return dict(
        type='FrozenFeatureExtractor',
        backbone=backbone,
        pooling=pooling,
        data_preprocessor=dict(
            type='ClsDataPreprocessor',
            mean=list(pre.get('mean', IMAGENET_MEAN)),
            std=list(pre.get('std', IMAGENET_STD)),
            to_rgb=bool(pre.get('to_rgb', True))))


def image_size(backbone_cfg: dict) -> List[int]:
    """``[H, W]`` the backbone was pretrained on (default 224)."""
    size = backbone_cfg.get('img_size', 224)
    return [size, size] if isinstance(size, int) else list(size)


def _plain(d) -> dict:
    if isinstance(d, (ConfigDict, dict)):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return type(d)(_plain(v) for v in d)
    return d


def build_frozen_extractor(cfg: Config, pooling: str = 'cls_token',
                           checkpoint: Optional[str] = None
                           ) -> FrozenFeatureExtractor:
    """Build the extractor of ``cfg``'s backbone and load ``checkpoint``
    (without one: the backbone's own ``init_weights``, a random-init
    baseline)."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mlmask_mm'):
        model = MODELS.build(extractor_config(cfg, pooling))
    if checkpoint is None:
        model.backbone.init_weights()
        model.freeze()
    else:
        load_backbone_weights(model, checkpoint)
    return model


def folder_dataset(root: str, img_size: Sequence[int]):
    """A class-folder tree (``root/<class>/<image>``) read for evaluation:
    the short edge resized to the pretraining size (bicubic), then a centre
    crop of that size, so every image is seen whole when it is square."""
    from mlmask_mm.datasets import ImageFolder
    h, w = img_size
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=min(h, w), edge='short',
             backend='pillow', interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=(w, h)),
        dict(type='PackInputs'),
    ]
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mlmask_mm'):
        return ImageFolder(data_root=root, pipeline=pipeline,
                           test_mode=True)


def extract_features(model: FrozenFeatureExtractor, dataset,
                     batch_size: int = 64, num_workers: int = 0,
                     device: str = 'cpu'):
    """``(features N x D float32, labels N int64)`` of a dataset, in its
    order; one ``model`` forward per batch."""
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=pseudo_collate)
    model = model.to(device)
    features, labels = [], []
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        features.append(model(data['inputs'], mode='tensor').float().cpu())
        labels += [int(s.gt_label.item()) for s in data['data_samples']]
    return torch.cat(features), torch.tensor(labels, dtype=torch.long)


__all__: Sequence[str] = (
    'FrozenFeatureExtractor', 'POOLINGS',
    'build_frozen_extractor', 'embedded_config', 'extract_features',
    'extractor_config', 'folder_dataset', 'image_size',
    'load_backbone_weights', 'load_checkpoint_safely')
