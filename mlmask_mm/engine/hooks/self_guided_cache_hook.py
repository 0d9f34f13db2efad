"""Refresh Self-Guided MAE's per-image relevance cache every k epochs."""
import contextlib
import copy
import math
import time
from typing import Optional

import torch
from mmengine.dataset import BaseDataset, Compose
from mmengine.dist import all_gather, get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from torch.utils.data import DataLoader

from mlmask_mm.datasets.transforms import RecordedRandomResizedCrop
from mlmask_mm.models.maskers.relevance_cache import RelevanceCache
from mlmask_mm.registry import HOOKS, TRANSFORMS
from mlmask_mm.utils.rng_state import get_rng_state, set_rng_state


@HOOKS.register_module()
class SelfGuidedCacheHook(Hook):
    """Compute the relevance maps of ``SelfGuidedMasker(mode='cached')``.

    While informed masks are in use (the masker is the model's masker, or
    the active / a sampled member of its ``CompositeMasker``) the hook
    refreshes the cache before the first informed iteration and then every
    ``interval`` epochs (iterations with ``by_epoch=False``).  A refresh is
    one no-grad pass of the current model over every training image seen
    whole: the train pipeline's transforms before its
    ``RecordedRandomResizedCrop`` (loading), then a resize of the whole
    image to the crop's output size, no flip; each image's relevance S
    (steps 1-5 of :mod:`~mlmask_mm.models.maskers.self_guided_masker`) is
    stored as an h x w map under its dataset index.  Per batch the masker
    then maps it through the sample's crop box and flip.

    Under DDP each rank computes the maps of indices ``rank::world_size``
    and all ranks gather the full cache (host memory, float16).  The cache
    is not saved in checkpoints: after a resume it is recomputed from the
    resumed weights before the first informed iteration, and the interval
    counts from there.

    Args:
        interval: k, epochs (or iterations) between refreshes.
        by_epoch: count ``interval`` in epochs (default) or iterations.
        batch_size: of the refresh pass (default: the train loader's).
        num_workers: of the refresh pass (default: the train loader's).
    """

    priority = 'NORMAL'

    def __init__(self,
                 interval: int = 10,
                 by_epoch: bool = True,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError('SelfGuidedCacheHook: interval must be an '
                             f'integer >= 1, got {interval!r}')
        self.interval = interval
        self.by_epoch = by_epoch
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.refreshed_at: Optional[int] = None
        self._dataset = None

    # ------------------------------------------------------------ checks
    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def _masker(self, runner):
        """The cached SelfGuidedMasker inside the model's masker."""
        masker = self._model(runner).masker
        found = [m for m in masker.modules()
                 if type(m).__name__ == 'SelfGuidedMasker']
        if len(found) != 1 or found[0].mode != 'cached':
            raise TypeError(
                'SelfGuidedCacheHook needs exactly one '
                "SelfGuidedMasker(mode='cached') in model.masker, got "
                f'{masker!r}')
        return found[0]

    def informed_active(self, runner) -> bool:
        """Whether the cached masker may draw masks in this iteration."""
        masker = self._model(runner).masker
        cached = self._masker(runner)
        if masker is cached:
            return True
        if getattr(masker, 'mode', None) == 'switch':
            return masker.maskers[int(masker.active)] is cached
        return True  # 'random' composite: it may be drawn any time

    def before_train(self, runner) -> None:
        masker = self._masker(runner)
        dataset = runner.train_dataloader.dataset
        if not isinstance(dataset, BaseDataset):
            raise TypeError(
                'SelfGuidedCacheHook keys its maps by sample_idx and needs '
                'train_dataloader.dataset to be an mmengine BaseDataset '
                f'(not a wrapper), got {type(dataset).__name__}')
        transforms = list(dataset.pipeline.transforms)
        crops = [i for i, t in enumerate(transforms)
                 if isinstance(t, RecordedRandomResizedCrop)]
        if len(crops) != 1:
            names = [type(t).__name__ for t in transforms]
            raise ValueError(
                'SelfGuidedCacheHook: the train pipeline must contain one '
                "RecordedRandomResizedCrop (it records each sample's crop "
                f'box), found {len(crops)} in {names}')
        state = get_rng_state()
        try:
            meta = dataset[0]['data_samples'].metainfo
        finally:
            set_rng_state(state)
        missing = [k for k in ('sample_idx', 'crop_box') if k not in meta]
        if missing:
            raise ValueError(
                f'SelfGuidedCacheHook: the packed samples lack {missing}; '
                'use PackInputs(meta_keys=mlmask_mm.datasets.'
                'SELF_GUIDED_META_KEYS) in the train pipeline')
        crop = transforms[crops[0]]
        resize = TRANSFORMS.build(
            dict(type='Resize', scale=tuple(crop.scale[::-1]),
                 keep_ratio=False, backend=crop.backend,
                 interpolation=crop.interpolation))
        pack = TRANSFORMS.build(dict(type='PackInputs',
                                     meta_keys=('sample_idx', )))
        self._dataset = copy.copy(dataset)  # shares the data list
        self._dataset.pipeline = Compose(transforms[:crops[0]] +
                                         [resize, pack])
        grid = tuple(self._model(runner).backbone.patch_resolution)
        masker.cache = RelevanceCache(len(dataset), grid)
        self.refreshed_at = None

    # ----------------------------------------------------------- refresh
    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if not self.informed_active(runner):
            return
        progress = runner.epoch if self.by_epoch else runner.iter
        if (self.refreshed_at is None
                or progress - self.refreshed_at >= self.interval):
            self.refresh(runner)
            self.refreshed_at = progress

    @torch.no_grad()
    def refresh(self, runner) -> None:
        model = self._model(runner)
        masker = self._masker(runner)
        loader = runner.train_dataloader
        rank, world = get_dist_info()
        num = len(self._dataset)
        shard = DataLoader(
            self._dataset,
            batch_size=self.batch_size or loader.batch_size,
            sampler=list(range(rank, num, world)),
            num_workers=(self.num_workers if self.num_workers is not None
                         else loader.num_workers),
            collate_fn=loader.collate_fn)
        precision = runner.optim_wrapper.optim_context(model) \
            if isinstance(runner.optim_wrapper, OptimWrapper) \
            else contextlib.nullcontext()
        start = time.perf_counter()
        state = get_rng_state()
        was_training = model.training
        model.eval()
        indices, maps = [], []
        try:
            with precision:
                for batch in shard:
                    indices += [int(s.sample_idx)
                                for s in batch['data_samples']]
                    inputs = model.data_preprocessor(batch, False)['inputs']
                    tokens = model.backbone.embed(inputs)
                    features = masker.token_features(model, tokens)
                    maps.append(masker.relevance(features).cpu().half())
        finally:
            model.train(was_training)
            set_rng_state(state)
        indices = torch.tensor(indices, dtype=torch.long)
        maps = torch.cat(maps)
        if world > 1:
            indices, maps = gather_shards(indices, maps,
                                          math.ceil(num / world))
        masker.cache.store(indices, maps)
        masker.cache.refreshes += 1
        seconds = time.perf_counter() - start
        runner.message_hub.update_scalar('train/sg_cache_refreshes',
                                         masker.cache.refreshes)
        runner.logger.info(
            f'self-guided: relevance cache refreshed ({num} images, '
            f'{seconds:.1f} s, refresh {masker.cache.refreshes})')


def gather_shards(indices: torch.Tensor, maps: torch.Tensor, size: int):
    """All ranks' (indices, maps), padded to ``size`` rows for all_gather."""
    pad = size - len(indices)
    indices = torch.cat([indices, indices.new_full((pad, ), -1)])
    maps = torch.cat([maps, maps.new_zeros(pad, *maps.shape[1:])])
    all_indices = torch.cat(all_gather(indices))
    all_maps = torch.cat(all_gather(maps.float())).half()  # gloo: no fp16
    keep = all_indices >= 0
    return all_indices[keep], all_maps[keep]
