"""Does a checkpoint's masker hide the hard patches or the easy ones?

    python tools/analysis_tools/mask_difficulty.py CONFIG CHECKPOINT \
        [CHECKPOINT ...] [--data DIR] [--num-images 256] [--draws 8] \
        [--seed 0] [--out JSON] [--cfg-options ...]

For every checkpoint (in the order given), on the same whole images: the
difficulty ℓ_i of each patch is the checkpoint's own reconstruction loss
under random masks (mean over ``--draws``), and the masker's masks are
compared with it: ``masked_harder`` = P(ℓ of a masked patch > ℓ of a kept
patch of the same image) (0.5: unrelated; > 0.5 hides hard patches, CL-MAE's
adversary; < 0.5 hides easy ones, its partner), the mean ℓ of masked and
kept patches, and the share of keep/mask decisions equal to the previous
checkpoint's.  CL-MAE checkpoints also print their curriculum factor c.
See mlmask_mm/evaluation/mask_difficulty.py and docs/cl_mae.md.
"""
import argparse
import json
import os.path as osp
import sys

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

from mlmask_mm.evaluation.checkpoint_images import (build_model,  # noqa: E402
                                                    whole_images)
from mlmask_mm.evaluation.mask_difficulty import (  # noqa: E402
    difficulty_stats, reference_patch_loss)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('checkpoints', nargs='+', metavar='CHECKPOINT')
    p.add_argument('--data', help='class-folder tree (default: the config '
                   'train set)')
    p.add_argument('--num-images', type=int, default=256)
    p.add_argument('--draws', type=int, default=8,
                   help='random masks per image for the difficulty')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='also write the JSON here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for ckpt in args.checkpoints:
        if not osp.isfile(ckpt):
            raise FileNotFoundError(f'checkpoint {ckpt} does not exist')
    model, cfg = build_model(args.config, None, args.cfg_options)
    inputs = whole_images(model, cfg, args.data, args.num_images)
    rows, previous = [], None
    for ckpt in args.checkpoints:
        load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
        model.eval()
        with torch.no_grad():
            reference = reference_patch_loss(model, inputs, args.draws,
                                             args.seed)
            _, result = model.mask(inputs)
        row = dict(checkpoint=ckpt, **difficulty_stats(reference,
                                                       result.mask))
        if hasattr(model, 'curriculum_factor'):
            row['curriculum'] = float(model.curriculum_factor)
        mask = result.mask.bool()
        if previous is not None:
            row['same_as_previous'] = float((mask == previous).float().mean())
        previous = mask
        rows.append(row)
        print(' '.join(f'{k}={v:.4f}' if isinstance(v, float) else
                       f'{k}={v}' for k, v in row.items()), flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, num_images=inputs.shape[0],
                           draws=args.draws, seed=args.seed, rows=rows), f,
                      indent=2)
    return rows


if __name__ == '__main__':
    main()
