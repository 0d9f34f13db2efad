"""Per-image relevance maps of Self-Guided MAE's cached generation modes.

At the switch (and every k epochs with ``generation='refresh'``)
:class:`~mlmask_mm.engine.hooks.SelfGuidedHook` has
:class:`~mlmask_mm.models.algorithms.SelfGuidedMAE` compute the relevance
S_i of every patch of every training image, seen whole (resized to the
model's input size, no crop, no flip), and stores it here as an h x w map
in the image's own coordinates, keyed by the dataset index.  A training sample is
a random crop of its image, maybe flipped; its relevance is read from the
map at the centres of its own patches (:func:`view_relevance`):

    patch (i, j) of the view, u = (j + ½) / w, v = (i + ½) / h
    (u → 1 − u for a horizontal flip, v → 1 − v for a vertical one),
    image point x = x0 + u (x1 − x0), y = y0 + v (y1 − y0),

with (x0, y0, x1, y1) the crop box as fractions of the image
(``RecordedRandomResizedCrop`` records it), and the map sampled bilinearly
there.  The flip is applied after the crop, as in the MAE pipelines.

Each map is kept normalised per image, S̃ = (S − lo) / (hi − lo) ∈ [0, 1]
as float16 (lo and hi − lo as float32: :meth:`RelevanceCache.relevance`
gives S back), and views read S̃: the masker ranks the patches of a map, and
relevance of near-uniform features spans ~1e-4 around 1.0, which float16
(or even float32) values of S itself would round to a few levels (on the
demo, 6-9 of 16 maps to a single value).  Normalised, a map keeps 2^-11 of
its own range at worst.  The maps
live in host memory (N x h x w float16: 1.28 M ImageNet images at 14 x 14
take 0.5 GB), on every rank, and are saved in checkpoints with the
algorithm's state, so a resumed run keeps the masks generated at T.
"""
from typing import Sequence

import torch
import torch.nn.functional as F

FLIPS = {None: (False, False), 'horizontal': (True, False),
         'vertical': (False, True), 'diagonal': (True, True)}


def view_relevance(maps: torch.Tensor, boxes: torch.Tensor,
                   flips: torch.Tensor, out_hw: Sequence[int]) -> torch.Tensor:
    """Relevance of each view's patches from its image's map.

    Args:
        maps: B x h x w relevance maps over whole images.
        boxes: B x 4 crop boxes (x0, y0, x1, y1), fractions of the image.
        flips: B x 2 bools, (horizontal, vertical) flip after the crop.
        out_hw: the view's patch grid (h', w').
    Returns:
        B x (h' w') relevance, row-major like the patch tokens.
    """
    B = maps.shape[0]
    oh, ow = out_hw
    dtype, device = maps.dtype, maps.device
    u = (torch.arange(ow, dtype=dtype, device=device) + 0.5) / ow
    v = (torch.arange(oh, dtype=dtype, device=device) + 0.5) / oh
    u = torch.where(flips[:, :1], 1 - u, u)  # B x w'
    v = torch.where(flips[:, 1:], 1 - v, v)  # B x h'
    boxes = boxes.to(dtype)
    x = boxes[:, :1] + u * (boxes[:, 2:3] - boxes[:, :1])
    y = boxes[:, 1:2] + v * (boxes[:, 3:4] - boxes[:, 1:2])
    # grid_sample's coordinates: -1 / +1 = the outer edges of the map
    grid = torch.stack(torch.broadcast_tensors(
        x[:, None, :] * 2 - 1, y[:, :, None] * 2 - 1), dim=-1)  # B h' w' 2
    out = F.grid_sample(maps.unsqueeze(1), grid, mode='bilinear',
                        padding_mode='border', align_corners=False)
    return out.reshape(B, oh * ow)


def normalise(maps: torch.Tensor):
    """Per image S̃ = (S − lo) / (hi − lo) of B x ... relevance (float64),
    with lo and hi − lo; a constant map gives S̃ = 0, range 0."""
    flat = maps.detach().flatten(1).double()
    lo, hi = flat.amin(-1), flat.amax(-1)
    span = hi - lo
    n = (flat - lo[:, None]) / torch.where(span > 0, span, 1.0)[:, None]
    return n.reshape(maps.shape), lo, span


def encode(maps: torch.Tensor):
    """B x ... relevance → (float16 S̃, float32 lo, float32 hi − lo)."""
    n, lo, span = normalise(maps)
    return n.to(torch.float16), lo.float(), span.float()


class RelevanceCache:
    """N x h x w relevance maps (normalised per image, float16, with each
    map's float32 offset and range; host memory), by dataset index."""

    def __init__(self, num_images: int, grid: Sequence[int]) -> None:
        self.maps = torch.zeros(num_images, *grid, dtype=torch.float16)
        self.offset = torch.zeros(num_images, dtype=torch.float32)
        self.scale = torch.zeros(num_images, dtype=torch.float32)
        self.filled = torch.zeros(num_images, dtype=torch.bool)
        self.refreshes = 0  # how many times the whole cache was computed
        self.generated_at = None  # progress (epoch / iteration) of the last

    def state(self) -> dict:
        """Tensors only (mmengine broadcasts every state_dict entry;
        checkpoints load with weights_only): the maps, their offsets and
        ranges, which images are filled, and int64 (refreshes,
        generated_at or −1)."""
        return dict(maps=self.maps, offset=self.offset, scale=self.scale,
                    filled=self.filled, info=torch.tensor(
                        [self.refreshes, -1 if self.generated_at is None
                         else self.generated_at], dtype=torch.long))

    @classmethod
    def from_state(cls, state: dict) -> 'RelevanceCache':
        missing = {'maps', 'offset', 'scale', 'filled', 'info'} - set(state)
        if missing:
            raise KeyError(f'relevance cache state lacks {sorted(missing)}')
        cache = cls(0, state['maps'].shape[1:])
        cache.maps = state['maps'].to('cpu', torch.float16)
        cache.offset = state['offset'].to('cpu', torch.float32)
        cache.scale = state['scale'].to('cpu', torch.float32)
        cache.filled = state['filled'].to('cpu', torch.bool)
        refreshes, generated_at = state['info'].tolist()
        cache.refreshes = int(refreshes)
        cache.generated_at = None if generated_at < 0 else int(generated_at)
        return cache

    @property
    def grid(self):
        return tuple(self.maps.shape[1:])

    def store(self, indices: torch.Tensor, maps: torch.Tensor) -> None:
        """Keep B maps (B x L or B x h x w relevance) under their indices."""
        self.store_encoded(indices, *encode(maps.reshape(len(indices), -1)))

    def store_encoded(self, indices: torch.Tensor, codes: torch.Tensor,
                      offset: torch.Tensor, scale: torch.Tensor) -> None:
        """Keep maps already encoded by :func:`encode` (e.g. gathered from
        ranks)."""
        indices = indices.cpu()
        self.maps[indices] = codes.to('cpu', torch.float16).reshape(
            len(indices), *self.grid)
        self.offset[indices] = offset.to('cpu', torch.float32)
        self.scale[indices] = scale.to('cpu', torch.float32)
        self.filled[indices] = True

    def relevance(self, indices: torch.Tensor) -> torch.Tensor:
        """The stored whole-image maps, N x h x w float32."""
        return self.offset[indices, None, None] + \
            self.scale[indices, None, None] * self.maps[indices].float()

    def lookup(self, data_samples, out_hw: Sequence[int],
               device: torch.device) -> torch.Tensor:
        """B x L relevance of the views described by ``data_samples``,
        normalised per image (:func:`encode`; what the masker ranks)."""
        if data_samples is None or len(data_samples) == 0:
            raise ValueError(
                "SelfGuidedMAE's cached relevance needs the batch's data "
                'samples (sample_idx, crop_box, flip)')
        indices, boxes, flips = [], [], []
        for s in data_samples:
            meta = s.metainfo
            for key in ('sample_idx', 'crop_box'):
                if key not in meta:
                    raise KeyError(
                        f"SelfGuidedMAE's cached relevance: data sample has no "
                        f"'{key}'; the train pipeline needs "
                        "RecordedRandomResizedCrop and PackInputs(meta_keys="
                        'mlmask_mm.datasets.SELF_GUIDED_META_KEYS)')
            direction = meta.get('flip_direction') if meta.get('flip') \
                else None
            if direction not in FLIPS:
                raise ValueError(f'unsupported flip_direction {direction!r}')
            indices.append(int(meta['sample_idx']))
            boxes.append(meta['crop_box'])
            flips.append(FLIPS[direction])
        index = torch.tensor(indices)
        if index.max() >= len(self.filled) or not self.filled[index].all():
            missing = [i for i in indices
                       if i >= len(self.filled) or not self.filled[i]]
            raise KeyError(f'relevance cache has no map for dataset indices '
                           f'{missing[:8]} (cache of {len(self.filled)} '
                           'images): SelfGuidedHook generates it before '
                           'informed masks are drawn')
        maps = self.maps[index].to(device=device, dtype=torch.float32)
        return view_relevance(maps, torch.tensor(boxes, device=device),
                              torch.tensor(flips, device=device), out_hw)
