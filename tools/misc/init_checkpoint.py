"""Write the untrained model of a pretraining config as a checkpoint: the
random-init baseline of the study's probes.

    python tools/misc/init_checkpoint.py CONFIG OUT.pth [--seed 0]
    python tools/model_converters/mlmask2backbone.py OUT.pth backbone.pth

The model is built and initialised exactly as ``tools/train.py`` does
before its first iteration (``init_weights()`` after seeding with
``--seed``, mmengine's ``set_random_seed``); the file holds
``state_dict`` and ``meta`` (``cfg``: the config text, ``iter`` 0,
``seed``), so ``fewshot.py`` reads its architecture from it and
``mlmask2backbone.py`` converts it like any pretraining checkpoint.
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.runner import set_random_seed

from mlmask_mm.evaluation.checkpoint_images import build_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='the untrained model of a config as a checkpoint')
    parser.add_argument('config', help='pretraining config')
    parser.add_argument('out', help='checkpoint to write (.pth)')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed of the initialisation (default 0)')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config {args.config!r} is not a file')
    set_random_seed(args.seed)
    model, cfg = build_model(args.config)
    meta = dict(cfg=cfg.pretty_text, iter=0, epoch=0, seed=args.seed,
                init_only=True)
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), meta=meta), args.out)
    print(f'{args.out}: untrained {type(model).__name__} of {args.config} '
          f'(seed {args.seed})')
    return args.out


if __name__ == '__main__':
    main()
