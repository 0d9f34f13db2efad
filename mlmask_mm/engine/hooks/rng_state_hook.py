"""Save the random number generators in checkpoints; restore them on resume.

mmengine 0.10 re-seeds on resume but does not restore the RNG *state*, so a
resumed run draws different masks (``torch.rand`` in the masker) and
different crops/flips (numpy in the pipeline) from the run it continues, and
its weights drift away from an uninterrupted run's.  This hook stores the
python, numpy, torch (and CUDA) generator states in ``checkpoint['rng_state']``
as plain Python values and tensors (so the file still loads with
``torch.load(weights_only=True)``) and puts them back when training resumes.

When they are put back matters.  ``IterBasedTrainLoop`` skips the batches the
checkpoint has already trained by fetching them again (which runs the
pipeline and, at epoch ends, makes new dataloader iterators: both draw random
numbers).  The state saved is the one right after iteration ``k``, before
batch ``k + 1`` is fetched, so it is restored after the skipped batches and
right before batch ``k + 1`` is fetched; the sampler order is the one of the
uninterrupted run because the skip goes through the same sampler epochs.  For
epoch-based loops the state is restored at the start of the resumed epoch.
A checkpoint merely loaded with ``load_from`` (a new run at iteration 0)
leaves the generators alone.

In distributed runs every rank has its own generators (``diff_rank_seed``);
the ranks' states are gathered just before a ``CheckpointHook`` saves and
each rank gets its own back on resume.  A resume with a different world size
keeps mmengine's re-seeding and logs a warning.
"""
from typing import Any, Dict, List, Optional

from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook

from mlmask_mm.registry import HOOKS
from mlmask_mm.utils.checkpoint_schedule import checkpoint_due
from mlmask_mm.utils.rng_state import get_rng_state, set_rng_state

CHECKPOINT_KEY = 'rng_state'


class _RestoreBeforeNext:
    """Iterator proxy: after ``skip`` ``next()`` calls run ``restore()``,
    then put the wrapped iterator back on the loop."""

    def __init__(self, loop, skip: int, restore) -> None:
        self._loop = loop
        self._inner = loop.dataloader_iterator
        self._skip = skip
        self._restore = restore

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip == 0:
            self._restore()
            self._loop.dataloader_iterator = self._inner
        else:
            self._skip -= 1
        return next(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Make resumed training draw the random numbers of uninterrupted runs.

    Registered in ``configs/_base_/default_runtime.py`` (as
    ``mlmask_mm.RNGStateHook``, found from any default scope) as
    ``default_hooks.rng_state`` (``default_hooks`` merge by key, so configs
    that replace ``custom_hooks`` keep it).  To run without it, remove the
    key (``cfg.default_hooks.pop('rng_state')``): mmengine accepts ``None``
    only for the default hooks it defines itself.
    """

    # after every other hook of an iteration, just before CheckpointHook
    # (VERY_LOW = 90) saves: the state saved is the one the next batch sees
    priority = 85

    def __init__(self) -> None:
        self._gathered: Optional[List[Any]] = None
        self._gathered_at: Optional[tuple] = None
        self._pending: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------- saving
    def gather(self, runner) -> None:
        """Gather every rank's state for a save right now (a collective;
        nothing to do in a single process), e.g. PreemptionHook's."""
        if runner.world_size > 1:
            self._gathered = all_gather_object(get_rng_state())
            self._gathered_at = (runner.epoch, runner.iter)

    def _gather_if_due(self, runner, by_epoch: bool) -> None:
        # a collective: every rank evaluates the same condition
        if checkpoint_due(runner, by_epoch):
            self.gather(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self._gather_if_due(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_due(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        rank, world_size = get_dist_info()
        if world_size == 1:
            states = [get_rng_state()]
        elif self._gathered is not None and \
                self._gathered_at == (runner.epoch, runner.iter):
            states = self._gathered
        else:
            # saved outside CheckpointHook's schedule (e.g. a best
            # checkpoint): only this rank's state is known
            states = [None] * world_size
            states[rank] = get_rng_state()
        checkpoint[CHECKPOINT_KEY] = dict(world_size=world_size,
                                          states=states)

    # ------------------------------------------------------------ loading
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        meta = checkpoint.get('meta') or {}
        self._pending = None
        if saved is not None:
            self._pending = dict(saved, iter=meta.get('iter'),
                                 epoch=meta.get('epoch'))

    def _take_state(self, runner) -> Optional[Dict[str, Any]]:
        """The saved state of this rank if training resumes from it."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        loop = runner.train_loop
        at = (getattr(loop, 'iter', None), getattr(loop, 'epoch', None))
        if (pending['iter'], pending['epoch']) != at or at == (0, 0):
            return None  # load_from into a new run, not a resume
        rank, world_size = get_dist_info()
        states = pending['states']
        if pending['world_size'] != world_size or states[rank] is None:
            runner.logger.warning(
                f'RNGStateHook: the checkpoint holds the RNG states of '
                f'{pending["world_size"]} process(es), not of rank {rank} of '
                f'{world_size}; keeping the re-seeded generators (the resumed '
                'run will not repeat the random numbers of an uninterrupted '
                'one)')
            return None
        return states[rank]

    def before_train(self, runner) -> None:
        state = self._take_state(runner)
        if state is None:
            return

        def restore():
            set_rng_state(state)
            runner.logger.info('RNGStateHook: random generators restored '
                               f'to iteration {runner.iter}')

        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):
            # IterBasedTrainLoop: restore after its skipped batches
            loop.dataloader_iterator = _RestoreBeforeNext(
                loop, loop.iter, restore)
        else:
            # epoch-based: the resumed epoch starts a fresh dataloader pass
            restore()
