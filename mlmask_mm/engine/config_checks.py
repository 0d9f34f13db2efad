"""Checks that fail before anything is built when a config cannot train.

``prepare_config`` is what ``tools/train.py`` / ``tools/test.py`` call
before building the Runner: :func:`check_config`, then
:func:`~mlmask_mm.utils.setup_env.use_gloo_without_gpu` and
:func:`~mlmask_mm.utils.setup_env.flush_denormal`.  Checks shared by
every config live here; a method's own checks are the ``check_config(cfg)``
classmethod of its algorithm class, found through the registry from
``model.type`` (e.g. ``CLMAE.check_config``).
"""
import os.path as osp

from mmengine.config import Config
from mmengine.registry import DefaultScope

from mlmask_mm.models.backbones.maskable_vit import check_patch_grid
from mlmask_mm.models.maskers.base import check_mask_ratio
from mlmask_mm.registry import MODELS
from mlmask_mm.utils.setup_env import flush_denormal, use_gloo_without_gpu

_SIZE_TRANSFORMS = ('RandomResizedCrop', 'RecordedRandomResizedCrop',
                    'CenterCrop', 'Resize', 'RandomCrop')


def transform_name(transform: dict) -> str:
    """A pipeline transform's type without its scope prefix
    (``'mlmask_mm.RecordedRandomResizedCrop'`` →
    ``'RecordedRandomResizedCrop'``)."""
    return str(transform.get('type', '')).split('.')[-1]


def _pipeline_size(pipeline):
    """Output size of the last resizing transform of a pipeline, or None."""
    size = None
    for t in pipeline or []:
        if transform_name(t) in _SIZE_TRANSFORMS:
            for key in ('scale', 'crop_size', 'size'):
                if t.get(key) is not None:
                    size = t[key]
    if isinstance(size, int):
        return (size, size)
    return tuple(size) if size is not None else None


def model_class(model_type):
    """The registered class of ``model.type`` (this package's scope, falling
    back to mmpretrain's), or ``None`` (e.g. an mmseg / mmdet model)."""
    if isinstance(model_type, type):
        return model_type
    if not isinstance(model_type, str):
        return None
    try:
        with DefaultScope.overwrite_default_scope('mlmask_mm'):
            return MODELS.get(model_type)
    except (KeyError, ImportError):
        return None


def check_config(cfg: Config) -> None:
    """Fail before anything is built when the config cannot train.

    Checks the patch grid (image size divisible by the patch size), the mask
    ratios, the model class's own ``check_config(cfg)`` if it has one, and,
    for masked pretraining (a mask ratio or a masker in the model), that the
    training pipeline produces images of the size the backbone expects;
    transfer configs (mmseg / mmdet) resize freely and the backbone
    interpolates its position embeddings.  Each error names the setting and
    its value.
    """
    model = cfg.get('model', {})
    backbone = model.get('backbone', {}) or {}
    img_size = backbone.get('img_size', 224)
    patch_size = backbone.get('patch_size', 16)
    check_patch_grid(img_size, patch_size)
    if 'mask_ratio' in backbone:
        check_mask_ratio(backbone['mask_ratio'], 'model.backbone.mask_ratio')
    masker = model.get('masker') or {}
    if 'mask_ratio' in masker:
        check_mask_ratio(masker['mask_ratio'], 'model.masker.mask_ratio')
    method_check = getattr(model_class(model.get('type')), 'check_config',
                           None)
    if method_check is not None:
        method_check(cfg)
    loader = cfg.get('train_dataloader') or {}
    if 'mask_ratio' not in backbone and not masker:
        return
    dataset = loader.get('dataset') or {}
    out_size = _pipeline_size(dataset.get('pipeline'))
    want = (img_size, img_size) if isinstance(img_size, int) else tuple(
        img_size)
    if out_size is not None and out_size != want:
        raise ValueError(
            f'the training pipeline makes {out_size} images but '
            f'model.backbone.img_size={img_size}: set both to the same size')


def check_pretrained_checkpoint(cfg: Config) -> None:
    """Before training: a ``Pretrained`` backbone init needs a checkpoint
    file (the linear-probe / fine-tune configs leave it empty)."""
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    init = backbone.get('init_cfg')
    if not isinstance(init, dict) or init.get('type') != 'Pretrained':
        return
    path = init.get('checkpoint')
    if not path:
        raise ValueError(
            'model.backbone.init_cfg.checkpoint is empty: set it to a '
            'pretraining checkpoint (--cfg-options '
            'model.backbone.init_cfg.checkpoint=PATH), or set '
            'model.backbone.init_cfg=None to train from a random '
            'initialisation')
    if '://' not in str(path) and not osp.isfile(path):
        raise FileNotFoundError(
            f'model.backbone.init_cfg.checkpoint={path!r} is not a file')


def drop_collate_scopes(node) -> None:
    """Remove ``_scope_`` from every ``collate_fn`` dict, in place.

    A config inheriting ``mmpretrain::...`` gets ``_scope_='mmpretrain'``
    in each dict with a ``type``; mmengine's ``Runner.build_dataloader``
    passes every remaining key of ``collate_fn`` to the function, so
    ``default_collate`` fails in the first batch with "unexpected keyword
    argument '_scope_'" (seen on the first GPU run of the ViT-B configs).
    """
    if isinstance(node, dict):
        fn = node.get('collate_fn')
        if isinstance(fn, dict):
            fn.pop('_scope_', None)
        for value in node.values():
            drop_collate_scopes(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            drop_collate_scopes(value)


def prepare_config(cfg: Config) -> Config:
    """Check the config and adapt it to the machine (gloo without a GPU;
    ``env_cfg.flush_denormal``)."""
    check_config(cfg)
    drop_collate_scopes(cfg._cfg_dict)
    return flush_denormal(use_gloo_without_gpu(cfg))
