"""A checkpoint's model and a deterministic batch of images, for the
analysis tools (``sg_analysis.py``, ``mask_difficulty.py``)."""
import copy
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from mlmask_mm.engine.config_checks import prepare_config, transform_name
from mlmask_mm.registry import DATASETS, MODELS


def build_model(config: str, checkpoint: Optional[str] = None,
                cfg_options: Optional[dict] = None):
    """The config's model (eval mode) with ``checkpoint`` loaded, and the
    config."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg = prepare_config(cfg)
    init_default_scope(cfg.get('default_scope', 'mlmask_mm'))
    if cfg.get('data_preprocessor') and 'data_preprocessor' not in cfg.model:
        cfg.model.data_preprocessor = cfg.data_preprocessor
    model = MODELS.build(cfg.model)
    model.init_weights()
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu',
                        logger='silent')
    return model.eval(), cfg


def whole_images(model, cfg: Config, data: Optional[str] = None,
                 num_images: int = 16) -> torch.Tensor:
    """``num_images`` images spread evenly over the config's training set
    (or the class folders of ``data``), resized whole to the model's input
    size (the random crop becomes a resize, no flip), preprocessed.
    ``cfg`` is left as it is (a copy of its dataset config is changed)."""
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    if data:
        dataset_cfg.data_root = data
        dataset_cfg.data_prefix = ''
        dataset_cfg.ann_file = ''
    h, w = model.backbone.img_size
    pipeline = []
    for t in dataset_cfg.pipeline:
        name = transform_name(t)
        if name == 'RandomFlip':
            continue
        if name in ('RandomResizedCrop', 'RecordedRandomResizedCrop'):
            t = dict(type='Resize', scale=(w, h), keep_ratio=False,
                     backend=t.get('backend', 'cv2'),
                     interpolation=t.get('interpolation', 'bilinear'))
        pipeline.append(t)
    dataset_cfg.pipeline = pipeline
    dataset = DATASETS.build(dataset_cfg)
    n = min(num_images, len(dataset))
    idx = torch.linspace(0, len(dataset) - 1, n).round().long().tolist()
    batch = default_collate([dataset[i] for i in idx])
    return model.data_preprocessor(batch, False)['inputs']
