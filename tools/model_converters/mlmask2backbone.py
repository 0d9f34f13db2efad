"""Turn an mlmask_mm checkpoint into a backbone-only checkpoint for transfer.

    python tools/model_converters/mlmask2backbone.py SRC.pth DST.pth \
        [--target mmpretrain|mmseg|mmseg-mae|vitdet]

SRC: any pretraining checkpoint of this package (MaskedMAE with any masker,
CLMAE, Self-Guided MAE, MLO-MAE ...), or an mmpretrain classifier fine-tuned
from one (``configs/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py``):
the ``backbone.`` keys are kept; decoder, head and masker are dropped.

* ``mmseg-mae``: mmseg's ``MAE`` backbone, for
  ``configs/transfer/mae-base_upernet_*_ade20k-512x512.py``;
* ``vitdet``: ViTDet's backbone, for ``configs/transfer/vitdet_mask-rcnn_*``;
* ``mmpretrain`` (default) / ``mmseg``: mmpretrain's / mmseg's
  ``VisionTransformer`` names (plain ViT, all keys kept).

The keys dropped and the parameters the target starts from their init are
printed.  See :mod:`mlmask_mm.utils.backbone_converter` and docs/transfer.md.
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
                        'mmpretrain VisionTransformer; mmseg-mae: mmseg MAE '
                        'for the ADE20K configs; vitdet: the ViTDet COCO '
                        'configs)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta = convert_checkpoint(args.src, args.dst, args.target)
    print(f'{args.dst}: {meta["num_tensors"]} backbone tensors '
          f'({meta["target"]} layout), dropped: '
          f'{", ".join(meta["dropped_prefixes"]) or "nothing"}; backbone '
          f'keys dropped: {", ".join(meta["dropped_backbone_keys"]) or "none"}'
          f'; starting from their init in the target: '
          f'{", ".join(meta["new_params"]) or "none"}')


if __name__ == '__main__':
    main()
