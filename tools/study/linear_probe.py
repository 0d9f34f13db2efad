"""The linear-probe config of one study run: a frozen-ViT + linear-head
recipe fitted to the pretrained backbone, the study's data and length."""
from typing import Dict, Optional, Tuple

from mmengine.config import Config

from .run_length import schedule_options


def _arch_dims(arch) -> Tuple[int, int]:
    """(embed_dims, num_layers) of a ViT ``arch`` (dict or mmpretrain name)."""
    if isinstance(arch, str):
        from mmpretrain.models.backbones import VisionTransformer
        zoo = {k: v for keys, v in VisionTransformer.arch_zoo.items()
               for k in keys}
        if arch.lower() not in zoo:
            raise ValueError(f'unknown ViT arch {arch!r}')
        arch = zoo[arch.lower()]
    return int(arch['embed_dims']), int(arch['num_layers'])


def probe_config(pretrain_cfg: Config, probe_path: str, data: Dict,
                 backbone_ckpt: str, epochs: Optional[int], seed: int,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None) -> Config:
    """The linear-probe config of one run: ``probe_path`` (a frozen ViT +
    linear head recipe, e.g. ``configs/benchmarks/*linear*``) with the
    pretrained backbone's architecture, normalisation and image size, the
    converted checkpoint, the study's data (fit on the train part, test on
    the val part, no evaluation during training) and ``epochs``."""
    cfg = Config.fromfile(probe_path)
    src = pretrain_cfg.model.backbone
    embed, layers = _arch_dims(src.arch)
    size = src.get('img_size', 224)
    size = size if isinstance(size, int) else size[0]
    num_classes = len(data['classes'])
    b = cfg.model.backbone
    b.arch = src.arch
    b.img_size = src.get('img_size', 224)
    b.patch_size = src.get('patch_size', 16)
    if b.get('frozen_stages') is not None:
        b.frozen_stages = layers
    b.init_cfg = dict(type='Pretrained', checkpoint=backbone_ckpt)
    if cfg.model.get('neck') and 'input_features' in cfg.model.neck:
        cfg.model.neck.input_features = embed
    cfg.model.head.in_channels = embed
    cfg.model.head.num_classes = num_classes
    norm = pretrain_cfg.model.get('data_preprocessor') or \
        pretrain_cfg.get('data_preprocessor') or {}
    prep = dict(num_classes=num_classes,
                **{k: norm[k] for k in ('mean', 'std', 'to_rgb') if k in norm})
    if cfg.get('data_preprocessor') is not None:
        cfg.data_preprocessor.update(prep)
    if cfg.model.get('data_preprocessor') is not None:
        cfg.model.data_preprocessor.update(prep)
    elif cfg.get('data_preprocessor') is None:
        cfg.data_preprocessor = prep

    def loader(base, split):
        base = dict(base)
        ds = dict(base['dataset'])
        ds.update(data_root=data['root'], data_prefix=split, ann_file='',
                  metainfo=dict(classes=tuple(data['classes'])))
        pipeline = []
        for t in ds.get('pipeline', []):
            t = dict(t)
            for key in ('scale', 'crop_size'):
                if isinstance(t.get(key), int):
                    t[key] = size
            pipeline.append(t)
        ds['pipeline'] = pipeline
        base['dataset'] = ds
        if batch_size:
            base['batch_size'] = batch_size
        if num_workers is not None:
            base['num_workers'] = num_workers
            base['persistent_workers'] = num_workers > 0
        return base

    cfg.train_dataloader = loader(cfg.train_dataloader,
                                  data.get('probe_split') or data['train_split'])
    test = loader(cfg.get('test_dataloader') or cfg.val_dataloader,
                  data['val_split'])
    test['sampler'] = dict(type='DefaultSampler', shuffle=False)
    test['drop_last'] = False
    cfg.test_dataloader = test
    cfg.test_evaluator = dict(type='Accuracy',
                              topk=(1, 5) if num_classes > 5 else (1, ))
    cfg.test_cfg = cfg.get('test_cfg') or dict()
    # the val part is for the final report only: no evaluation in training
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    if cfg.train_cfg.get('val_interval') is not None:
        cfg.train_cfg.pop('val_interval')
    old = int(cfg.train_cfg.max_epochs)
    epochs = int(epochs or old)
    cfg.train_cfg.max_epochs = epochs
    for key, value in schedule_options(cfg, epochs / old).items():
        cfg.merge_from_dict({key: value})
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=max(1, epochs // 5), by_epoch=True,
        max_keep_ckpts=1)
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    return cfg
