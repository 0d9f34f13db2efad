"""Do a checkpoint's masks follow the image's content or only positions?

    python tools/analysis_tools/analyze_mask_content.py CONFIG [CHECKPOINT] \
        [--data DIR] [--num-images 256] [--shift 2] [--seed 0] \
        [--out JSON] [--cfg-options ...]

On whole images of the config's training set (or the class folders of
``--data``), resized to the model's input: the masks of the model's masker
for the images flipped, shifted by ``--shift`` patches, with their patches
shuffled and filled with their mean colour, compared with the masks of the
images themselves, and the texture AUC (mlmask_mm/evaluation/
mask_content.py; docs/cl_mae.md).  Without CHECKPOINT: the masker as
initialised.  Any ``MaskedMAE`` config (every masking method).
"""
import argparse
import json
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

from mmengine.config import DictAction  # noqa: E402

from mlmask_mm.evaluation.checkpoint_images import (build_model,  # noqa: E402
                                                    whole_images)
from mlmask_mm.evaluation.mask_content import (mask_content_test,  # noqa: E402
                                               model_mask_fn)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', help='default: the masker as '
                   'initialised')
    p.add_argument('--data', help='class-folder tree (default: the config '
                   'train set)')
    p.add_argument('--num-images', type=int, default=256)
    p.add_argument('--shift', type=int, default=2, help='patches')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the patch shuffle (and of the init)')
    p.add_argument('--out', help='also write the JSON here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.checkpoint and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(
            f'checkpoint {args.checkpoint} does not exist')
    import torch
    torch.manual_seed(args.seed)
    model, cfg = build_model(args.config, args.checkpoint, args.cfg_options)
    images = whole_images(model, cfg, args.data, args.num_images)
    patch = model.backbone.img_size[0] // model.backbone.patch_resolution[0]
    row = mask_content_test(model_mask_fn(model), images, patch,
                            shift=args.shift, seed=args.seed)
    row = dict(checkpoint=args.checkpoint, images=int(images.shape[0]),
               **row)
    if hasattr(model, 'curriculum_factor'):
        row['curriculum'] = float(model.curriculum_factor)
    print(' '.join(f'{k}={v:.4f}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in row.items()), flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, shift=args.shift,
                           seed=args.seed, **row), f, indent=2)
    return row


if __name__ == '__main__':
    main()
