"""Pictures of masks: input | masked input | reconstruction | recon + visible.

Shared by every masking method (the demo hook and ``tools/visualization/visualize_masks.py``).
Maskers that return ``scores`` get a fifth column with them as a heat map.
A title band of ``TITLE_HEIGHT`` pixels on top gives the batch's
``mask_specificity`` (1 = independent random masks, 0 = one position
pattern for every image;
:mod:`mlmask_mm.models.utils.mask_specificity`).
"""
from typing import List, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mlmask_mm.models.utils.mask_specificity import mask_specificity

TITLE_HEIGHT = 14  # pixels of the title band above the grid


def _to_uint8(images: torch.Tensor, mean: torch.Tensor,
              std: torch.Tensor) -> np.ndarray:
    """B x 3 x H x W normalised → B x H x W x 3 uint8."""
    x = images.float() * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    return x.clamp(0, 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _heat(scores: torch.Tensor, size) -> np.ndarray:
    """B x L scores in [0, 1] → B x H x W x 3 (blue = 0, red = 1)."""
    B, L = scores.shape
    side = int(round(L**0.5))
    s = scores.float().reshape(B, 1, side, side)
    lo = s.amin(dim=(2, 3), keepdim=True)
    hi = s.amax(dim=(2, 3), keepdim=True)
    s = (s - lo) / (hi - lo).clamp_min(1e-12)
    s = torch.nn.functional.interpolate(s, size=size, mode='nearest')[:, 0]
    rgb = torch.stack([s, 0.2 * torch.ones_like(s), 1 - s], dim=-1)
    return (rgb * 255).round().byte().cpu().numpy()


@torch.no_grad()
def render_mask_grid(model,
                     inputs: torch.Tensor,
                     data_samples: Optional[List] = None,
                     scale: int = 4) -> np.ndarray:
    """One row per image under a title band with the rows'
    ``mask_specificity``; returns an H' x W' x 3 uint8 array.

    ``inputs`` are preprocessed (normalised) images as the model sees them;
    ``model`` is a :class:`MaskedMAE` (or anything with ``predict_masks`` and
    a pixel head with ``patchify``/``unpatchify``).
    """
    was_training = model.training
    model.eval()
    try:
        result, pred = model.predict_masks(inputs, data_samples)
    finally:
        model.train(was_training)
    head = model.head
    target = head.patchify(inputs.float())
    pred = pred.float()
    if getattr(head, 'norm_pix', False):  # undo the per-patch normalisation
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        pred = pred * (var + 1e-6)**0.5 + mean
    m = result.mask.float().unsqueeze(-1)  # B x L x 1, 1 = masked
    recon = head.unpatchify(pred)
    pasted = head.unpatchify(target * (1 - m) + pred * m)

    prep = model.data_preprocessor
    mean, std = prep.mean.to(inputs.device), prep.std.to(inputs.device)
    original, recon, pasted = (_to_uint8(x, mean, std)
                               for x in (inputs, recon, pasted))
    # masked patches shown grey
    in_mask = head.unpatchify(m.expand_as(target)).permute(0, 2, 3, 1)
    masked = np.where(in_mask.cpu().numpy() > 0.5, 128, original)
    cols = [original, masked.astype(np.uint8), recon, pasted]
    if result.scores is not None:
        cols.append(_heat(result.scores.detach(), inputs.shape[-2:]))
    B, H, W, _ = cols[0].shape
    pad = 2
    grid = np.full((B * (H + pad) + pad, len(cols) * (W + pad) + pad, 3),
                   255, np.uint8)
    for r in range(B):
        for c, col in enumerate(cols):
            y, x = pad + r * (H + pad), pad + c * (W + pad)
            grid[y:y + H, x:x + W] = col[r]
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    specificity = float(mask_specificity(result.mask))
    return _with_title(grid, f'mask_specificity {specificity:.3f} '
                       f'({B} images)')


def _with_title(grid: np.ndarray, text: str) -> np.ndarray:
    """``grid`` under a white band of ``TITLE_HEIGHT`` px with ``text``."""
    band = Image.new('RGB', (grid.shape[1], TITLE_HEIGHT), (255, 255, 255))
    ImageDraw.Draw(band).text((2, 1), text, fill=(0, 0, 0),
                              font=ImageFont.load_default())
    return np.concatenate([np.asarray(band), grid], axis=0)


def save_png(grid: np.ndarray, path: str) -> None:
    Image.fromarray(grid).save(path)
