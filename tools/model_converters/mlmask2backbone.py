"""Turn an mlmask_mm pretraining checkpoint into a backbone-only checkpoint.

    python tools/model_converters/mlmask2backbone.py SRC.pth DST.pth \
        [--target mmpretrain|mmseg]

SRC: any pretraining checkpoint of this package (MaskedMAE with any masker,
CLMAE, Self-Guided MAE ...): the ``backbone.`` keys are kept, the decoder,
head and masker are dropped.  ``--target mmpretrain`` (default) keeps
mmpretrain's ``VisionTransformer`` names, the backbone of this package's
mmseg / mmdet configs (``configs/transfer/``); ``--target mmseg`` writes
mmseg's own ``VisionTransformer`` names.  See
:mod:`mlmask_mm.utils.backbone_converter`.
"""
import argparse

from mlmask_mm.utils.backbone_converter import TARGETS, convert_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='mlmask_mm pretraining checkpoint -> backbone checkpoint')
    parser.add_argument('src', help='pretraining checkpoint (.pth)')
    parser.add_argument('dst', help='backbone checkpoint to write (.pth)')
    parser.add_argument('--target', choices=TARGETS, default='mmpretrain',
                        help='key layout of the backbone (default: '
                        'mmpretrain VisionTransformer)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta = convert_checkpoint(args.src, args.dst, args.target)
    print(f'{args.dst}: {meta["num_tensors"]} backbone tensors '
          f'({meta["target"]} layout), dropped: '
          f'{", ".join(meta["dropped_prefixes"]) or "nothing"}')


if __name__ == '__main__':
    main()
