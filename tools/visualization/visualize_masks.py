"""Render a checkpoint's masks and reconstructions on a few images.

    python tools/visualization/visualize_masks.py CONFIG [CHECKPOINT]
        [--data DIR] [--num-images 8] [--seed 0] [--out masks.png] [--cfg-options ...]

Rows: input | masked input | reconstruction | reconstruction with the visible
patches pasted back | per-patch scores (for maskers that return them).
Works for every masker of the package.
"""
import argparse

import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from mlmask_mm.engine.config_checks import prepare_config
from mlmask_mm.registry import DATASETS, MODELS
from mlmask_mm.visualization import render_mask_grid, save_png


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', help='weights (default: random '
                   'initialisation, to look at a masker alone)')
    p.add_argument('--data', help='class-folder tree (default: the config '
                   'train set)')
    p.add_argument('--num-images', type=int, default=8)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='masks.png')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args()


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg = prepare_config(cfg)
    init_default_scope(cfg.get('default_scope', 'mlmask_mm'))
    if cfg.get('data_preprocessor') and 'data_preprocessor' not in cfg.model:
        cfg.model.data_preprocessor = cfg.data_preprocessor  # as the Runner
    model = MODELS.build(cfg.model)
    model.init_weights()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    dataset_cfg = cfg.train_dataloader.dataset
    if args.data:
        dataset_cfg.data_root = args.data
    dataset = DATASETS.build(dataset_cfg)
    n = min(args.num_images, len(dataset))
    idx = torch.linspace(0, len(dataset) - 1, n).round().long().tolist()
    torch.manual_seed(args.seed)
    batch = default_collate([dataset[i] for i in idx])
    data = model.data_preprocessor(batch, False)
    grid = render_mask_grid(model, data['inputs'], data['data_samples'])
    save_png(grid, args.out)
    print(f'saved {args.out}')


if __name__ == '__main__':
    main()
