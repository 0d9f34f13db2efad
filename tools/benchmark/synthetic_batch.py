"""The benchmark's inputs: a synthetic collated batch of the config's crop
size, and Self-Guided MAE switched to its steady state (informed masks)."""
from typing import Optional

import torch


def synthetic_batch(batch_size: int, size: int, generator: torch.Generator,
                    num_classes: Optional[int] = None,
                    grid: Optional[int] = None) -> dict:
    """A collated batch as the train pipeline gives it: uint8 images
    B x 3 x size x size and data samples with ``sample_idx``, a random crop
    box and flip (what ``RecordedRandomResizedCrop``/``RandomFlip`` record),
    a class label if ``num_classes`` and a random patch-grid ``mask`` (read
    by ``RegionMasker``) if ``grid``."""
    from mmpretrain.structures import DataSample
    inputs = torch.randint(0, 256, (batch_size, 3, size, size),
                           generator=generator, dtype=torch.uint8)
    samples = []
    for i in range(batch_size):
        side = (0.3 + 0.7 * torch.rand(2, generator=generator)).tolist()
        x0, y0 = (torch.rand(2, generator=generator) *
                  (1 - torch.tensor(side))).tolist()
        flip = bool(torch.rand(1, generator=generator) < 0.5)
        s = DataSample(metainfo=dict(
            sample_idx=i, img_shape=(size, size), ori_shape=(size, size),
            crop_box=(x0, y0, x0 + side[0], y0 + side[1]), flip=flip,
            flip_direction='horizontal' if flip else None))
        if num_classes:
            s.set_gt_label(int(torch.randint(num_classes, (1, ),
                                             generator=generator)))
        if grid:
            s.set_field((torch.rand(grid, grid, generator=generator) <
                         0.5).float(), 'mask', dtype=torch.Tensor)
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def to_device(batch: dict, device: torch.device) -> dict:
    return dict(batch, inputs=batch['inputs'].to(device))


@torch.no_grad()
def activate_informed_masking(model: torch.nn.Module, batch: dict) -> int:
    """Self-Guided MAE's steady state: a :class:`SelfGuidedMAE` is switched
    to informed masks (what ``SelfGuidedHook`` does at T) and, unless it
    computes relevance every iteration, its cache is filled from ``batch``
    (sample_idx 0..B-1, whole images, eval mode); returns 1 for such a
    model, else 0."""
    from mlmask_mm.models.algorithms.self_guided_mae import SelfGuidedMAE
    if not isinstance(model, SelfGuidedMAE):
        return 0
    model.start_informed(0, 0)
    if model.generation != 'iteration':
        was_training = model.training
        model.eval()
        try:
            data = model.data_preprocessor(batch, False)
            maps = model.image_relevance(data['inputs'], warn=False)
            model.new_cache(len(maps))
            model.store_relevance(torch.arange(len(maps)), maps.cpu().half(),
                                  progress=0)
        finally:
            model.train(was_training)
    return 1
