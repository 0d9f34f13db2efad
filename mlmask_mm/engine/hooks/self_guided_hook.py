"""Drive :class:`~mlmask_mm.models.algorithms.SelfGuidedMAE` from the runner.

The algorithm owns the method (criterion, switch, relevance, cache, hint
ratio); this hook only gives it what lives in the runner: the clock, the
data, the ranks.  See docs/self_guided_mae.md.
"""
import contextlib
import copy
import math
import time
from typing import List, Optional, Sequence

import torch
from mmengine.dataset import BaseDataset, Compose
from mmengine.dist import all_gather, all_reduce, broadcast, get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.datasets.transforms import RandomResizedCrop
from torch.utils.data import DataLoader

from mlmask_mm.datasets.transforms import RecordedRandomResizedCrop
from mlmask_mm.engine.hooks.preemption_hook import stop_agreed
from mlmask_mm.models.utils.relevance_cache import encode
from mlmask_mm.registry import HOOKS, TRANSFORMS
from mlmask_mm.utils.rng_state import get_rng_state, set_rng_state


def balanced_sample(labels: Sequence, num: int, seed: int) -> List[int]:
    """``num`` dataset indices, as many of each class as possible: classes
    in a seeded order take turns, each giving its next image of a seeded
    permutation.  ``labels[i]`` may be ``None`` (one group)."""
    g = torch.Generator().manual_seed(seed)
    groups = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    keys = sorted(groups, key=repr)
    queues = [[groups[k][j] for j in torch.randperm(len(groups[k]),
                                                     generator=g)]
              for k in keys]
    order = torch.randperm(len(keys), generator=g).tolist()
    out, turn, num = [], 0, min(num, len(labels))
    while len(out) < num:
        for k in order:
            if turn < len(queues[k]) and len(out) < num:
                out.append(queues[k][turn])
        turn += 1
    return out


def gather_shards(indices: torch.Tensor, encoded, size: int):
    """All ranks' (indices, encoded maps), padded to ``size`` rows for
    all_gather; ``encoded`` = (float16 codes, offset, scale) of
    :func:`~mlmask_mm.models.utils.relevance_cache.encode`."""
    pad = size - len(indices)
    indices = torch.cat([indices, indices.new_full((pad, ), -1)])
    all_indices = torch.cat(all_gather(indices))
    keep = all_indices >= 0
    out = []
    for part in encoded:
        part = torch.cat([part, part.new_zeros(pad, *part.shape[1:])])
        # gloo has no float16; float16 -> float32 -> float16 is lossless
        gathered = torch.cat(all_gather(part.float())).to(part.dtype)
        out.append(gathered[keep])
    return all_indices[keep], tuple(out)


def _labels(dataset) -> list:
    out = []
    for i in range(len(dataset)):
        label = dataset.get_data_info(i).get('gt_label')
        out.append(None if label is None else int(label))
    return out


@HOOKS.register_module()
class SelfGuidedHook(Hook):
    """Runner side of Self-Guided MAE.

    * every iteration: tells the model the clock (hint-ratio decay) and,
      when it is due (at T; every k epochs with ``generation='refresh'``),
      runs the relevance generation pass over every training image, seen
      whole, sharded over the ranks and gathered on all of them;
    * every check (``model.switch.interval`` epochs or iterations): measures
      the exploitation rates on the rank's share of a fixed class-balanced
      sample of whole images, sums them over the ranks, lets the model
      decide on rank 0's copy of the sums and broadcasts the decision, so
      every rank switches at the same check; logs R_{V→O}, R_{M→O} and the
      decision.

    Args:
        batch_size, num_workers: of the generation pass (default: the train
            loader's).
    """

    priority = 'NORMAL'

    def __init__(self, batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None) -> None:
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._whole = None      # the train set, whole images
        self._batch = None      # this rank's share of the measurement sample

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        from mlmask_mm.models.algorithms import SelfGuidedMAE
        if not isinstance(model, SelfGuidedMAE):
            raise TypeError('SelfGuidedHook drives a SelfGuidedMAE model, '
                            f'got model.type={type(model).__name__}')
        return model

    # ------------------------------------------------------------- setup
    def before_train(self, runner) -> None:
        model = self._model(runner)
        by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        if model.switch['by_epoch'] != by_epoch:
            raise ValueError(
                f"model.switch.by_epoch={model.switch['by_epoch']} but the "
                f'train loop is {type(runner.train_loop).__name__}: count '
                'the switch in the units of the loop')
        dataset = runner.train_dataloader.dataset
        cached = model.generation != 'iteration'
        if not isinstance(dataset, BaseDataset):
            raise TypeError(
                'SelfGuidedHook reads whole training images by index and '
                'needs train_dataloader.dataset to be an mmengine '
                f'BaseDataset (not a wrapper), got {type(dataset).__name__}')
        transforms = list(dataset.pipeline.transforms)
        crops = [i for i, t in enumerate(transforms)
                 if isinstance(t, RandomResizedCrop)]
        recorded = [i for i in crops
                    if isinstance(transforms[i], RecordedRandomResizedCrop)]
        if not crops or (cached and len(recorded) != 1):
            names = [type(t).__name__ for t in transforms]
            raise ValueError(
                'SelfGuidedHook: the train pipeline must contain one '
                + ('RecordedRandomResizedCrop (it records each sample\'s '
                   f'crop box for generation={model.generation!r})'
                   if cached else 'RandomResizedCrop')
                + f', found {names}')
        if cached:
            meta = self._packed_meta(dataset)
            missing = [k for k in ('sample_idx', 'crop_box') if k not in meta]
            if missing:
                raise ValueError(
                    f'SelfGuidedHook: the packed samples lack {missing}; use '
                    'PackInputs(meta_keys=mlmask_mm.datasets.'
                    'SELF_GUIDED_META_KEYS) in the train pipeline')
            if model.cache is not None and len(model.cache.filled) != len(
                    dataset):
                raise ValueError(
                    f'the resumed relevance cache holds '
                    f'{len(model.cache.filled)} images but the train set has '
                    f'{len(dataset)}: resume on the same data')
        crop = transforms[crops[0]]
        size = tuple(model.backbone.img_size)  # (h, w)
        resize = TRANSFORMS.build(
            dict(type='Resize', scale=size[::-1], keep_ratio=False,
                 backend=crop.backend, interpolation=crop.interpolation))
        pack = TRANSFORMS.build(dict(type='PackInputs',
                                     meta_keys=('sample_idx', )))
        self._whole = copy.copy(dataset)  # shares the data list
        self._whole.pipeline = Compose(transforms[:crops[0]] + [resize, pack])
        num = model.measurement['num_images']
        if not isinstance(num, int) or num < 1:
            raise ValueError('model.measurement.num_images must be an '
                             f'integer >= 1, got {num!r}')
        rank, world = get_dist_info()
        sample = balanced_sample(_labels(dataset), num,
                                 model.measurement['seed'])
        mine = sample[rank::world]
        self._batch = runner.train_dataloader.collate_fn(
            [self._whole[i] for i in mine]) if mine else None

    @staticmethod
    def _packed_meta(dataset) -> dict:
        # the pipeline draws random numbers: leave every RNG as it was
        from mlmask_mm.utils.rng_state import get_rng_state, set_rng_state
        state = get_rng_state()
        try:
            return dataset[0]['data_samples'].metainfo
        finally:
            set_rng_state(state)

    # ------------------------------------------------------ per iteration
    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        model = self._model(runner)
        model.set_clock(runner.iter, runner.max_iters)
        progress = runner.epoch if model.switch['by_epoch'] else runner.iter
        if model.generation_due(progress):
            self.generate(runner, progress)
        if model.informed:
            runner.message_hub.update_scalar('train/sg_hint_ratio',
                                             model.hint_ratio)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        model = self._model(runner)
        if not model.switch['by_epoch'] and model.check_due(runner.iter + 1):
            self.check(runner, runner.iter + 1, runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        model = self._model(runner)
        if model.switch['by_epoch'] and model.check_due(runner.epoch + 1):
            self.check(runner, runner.epoch + 1, runner.iter)

    # ------------------------------------------------------------ checks
    def check(self, runner, progress: int, iteration: int) -> str:
        """Measure, agree over the ranks, decide, log; returns the decision."""
        model = self._model(runner)
        if self._batch is None:
            inputs = torch.zeros(0)
        else:
            inputs = model.data_preprocessor(self._batch, False)['inputs']
        sums = model.measure_rates(inputs)
        _, world = get_dist_info()
        if world > 1:
            all_reduce(sums, op='sum')
            broadcast(sums, src=0)  # bit-identical on every rank
        r_vo, r_mo = (sums[:2] / sums[2]).tolist()
        why = model.decide(progress, r_vo, r_mo)
        start = torch.tensor([int(why not in ('', 'informed'))])
        if world > 1:
            broadcast(start, src=0)
        if bool(start) and not model.informed:
            model.start_informed(progress, iteration)
            decision = (f'informed masks from {model.progress_unit} '
                        f'{progress} on ({why or "rank 0"})')
        elif model.informed:
            decision = f'informed since {model.progress_unit} ' \
                       f'{model.switch_at}'
        else:
            decision = 'random masks (' + (
                'R_M->O has been below R_V->O' if model.seen_below else
                'R_M->O not yet below R_V->O') + ')'
        if model.generation_due(progress):  # masks drawn from now on
            # a stop signal ends the pass (PreemptionHook then saves and
            # the resumed run generates again)
            self.generate(runner, progress, True)  # interruptible
        hub = runner.message_hub
        hub.update_scalar('train/sg_R_VO', r_vo)
        hub.update_scalar('train/sg_R_MO', r_mo)
        hub.update_scalar('train/sg_informed', float(model.informed))
        runner.logger.info(
            f'self-guided: {model.progress_unit} {progress}: '
            f'R_V->O={r_vo:.4f} R_M->O={r_mo:.4f} -> {decision}')
        return decision

    # -------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, runner, progress: int,
                 interruptible: bool = False) -> bool:
        """One no-grad pass over every training image (whole), sharded; the
        Fiedler vectors by exact float64 ``eigh``.  The random generators
        are left as they were.

        ``interruptible``: before each batch the ranks agree whether a stop
        signal arrived (:func:`~mlmask_mm.engine.hooks.preemption_hook.
        stop_agreed`); if so the pass ends with the cache unchanged and
        False is returned (still due: the resumed run generates it).
        """
        rng = get_rng_state()  # iter(DataLoader) draws a seed
        try:
            return self._generate(runner, progress, interruptible)
        finally:
            set_rng_state(rng)

    def _generate(self, runner, progress: int, interruptible: bool) -> bool:
        model = self._model(runner)
        loader = runner.train_dataloader
        rank, world = get_dist_info()
        num = len(self._whole)
        shard = DataLoader(
            self._whole,
            batch_size=self.batch_size or loader.batch_size,
            sampler=list(range(rank, num, world)),
            num_workers=(self.num_workers if self.num_workers is not None
                         else loader.num_workers),
            collate_fn=loader.collate_fn)
        precision = runner.optim_wrapper.optim_context(model) \
            if isinstance(runner.optim_wrapper, OptimWrapper) \
            else contextlib.nullcontext()
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        indices, encoded = [], []
        # images, near-uniform ones, Σ mean token cosine
        stats = torch.zeros(3, dtype=torch.float64)
        # as many steps on every rank (the shards differ by one image at
        # most), so that the ranks poll for a stop equally often
        steps = math.ceil(math.ceil(num / world) / shard.batch_size)
        batches = iter(shard)
        try:
            with precision:
                for step in range(steps):
                    if interruptible and stop_agreed(runner):
                        runner.logger.warning(
                            f'self-guided: relevance generation at '
                            f'{model.progress_unit} {progress} stopped after '
                            f'{step} of {steps} batches (stop signal); the '
                            'cache is unchanged and is generated again when '
                            'training resumes')
                        return False
                    batch = next(batches, None)
                    if batch is None:
                        continue
                    indices += [int(s.sample_idx)
                                for s in batch['data_samples']]
                    inputs = model.data_preprocessor(batch, False)['inputs']
                    relevance = model.image_relevance(inputs, exact=True)
                    encoded.append(encode(relevance.cpu()))
                    stats += torch.tensor([
                        len(relevance), float(model.degenerate.sum()),
                        float(model.feature_cosine.double().sum())],
                        dtype=torch.float64)
        finally:
            model.train(was_training)
        L = model.backbone.patch_resolution[0] * \
            model.backbone.patch_resolution[1]
        indices = torch.tensor(indices, dtype=torch.long)
        encoded = tuple(torch.cat(p) for p in zip(*encoded)) if encoded \
            else encode(torch.zeros(0, L))
        if world > 1:
            indices, encoded = gather_shards(indices, encoded,
                                             math.ceil(num / world))
            all_reduce(stats, op='sum')
        if model.cache is None or len(model.cache.filled) != num:
            model.new_cache(num)
        model.store_relevance(indices, encoded, progress)
        images, degenerate, cosine = stats.tolist()
        share = degenerate / images
        hub = runner.message_hub
        hub.update_scalar('train/sg_degenerate_share', share)
        hub.update_scalar('train/sg_feature_cosine', cosine / images)
        runner.logger.info(
            f'self-guided: relevance of {num} images generated at '
            f'{model.progress_unit} {progress} in '
            f'{time.perf_counter() - start:.1f} s (generation '
            f'{model.cache.refreshes}; Ncut by exact eigh); mean token '
            f'cosine of the {model.describe_features()}: '
            f'{cosine / images:.6f}')
        if degenerate:
            runner.logger.warning(
                f'self-guided: the {model.describe_features()} are '
                f'near-uniform (mean token cosine above ncut.degenerate_cos='
                f"{model.ncut['degenerate_cos']}) in {share:.1%} of "
                f'{int(images)} images: the cut is exact, but it splits '
                'features that differ little (a small or briefly trained '
                "model; features='blocks' or a later switch may carry more "
                'structure)')
        return True
