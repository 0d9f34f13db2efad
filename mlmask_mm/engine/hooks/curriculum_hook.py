"""The curriculum factor c(t) of CL-MAE, set before every training iteration.

CL-MAE (Madan et al., WACV 2024, §3, curriculum): the masking module's loss
is c(t) · L_rec^soft + ..., with c going from +1 (partner of the MAE: easy
masks) through 0 (neutral) to −1 (adversary: hard masks).  The published
schedule is linear over training and skips 0.
"""
import math
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop

from mlmask_mm.registry import HOOKS

SHAPES = ('linear', 'cosine', 'step')


def curriculum_value(t: int, total: int, start: float = 1.0,
                     end: float = -1.0, shape: str = 'linear',
                     skip_zero: bool = True, num_steps: int = 2) -> float:
    """c at step t ∈ [0, total) of a schedule from ``start`` to ``end``.

    ``linear``: c(p) = start + (end − start) · p;
    ``cosine``: c(p) = end + (start − end) · (1 + cos(π p)) / 2, at the
    progress p = t / (total − 1) (``start`` at the first step, ``end`` at
    the last).

    ``skip_zero`` (published, when start and end have opposite signs): c is
    sampled on the total + 1 points p_k = k / total and the point where it
    crosses 0 is left out: step t uses k = t before the crossing and
    k = t + 1 after it.  For start = 1, end = −1 and steps = epochs E this is
    the published schedule c(e) = 1 − 2e/E for e < E/2, 1 − 2(e + 1)/E after.

    ``step``: ``num_steps`` equal plateaus at linspace(start, end,
    num_steps); step t is on plateau ⌊t · n / total⌋; ``skip_zero`` drops a
    plateau at 0 (the others share its time).
    """
    if shape not in SHAPES:
        raise ValueError(f'shape must be one of {SHAPES}, got {shape!r}')
    if total < 1 or not 0 <= t < total:
        raise ValueError(f'step {t} is outside the schedule [0, {total})')
    if shape == 'step':
        if num_steps < 1:
            raise ValueError(f'num_steps must be >= 1, got {num_steps}')
        levels = [start + (end - start) * k / max(num_steps - 1, 1)
                  for k in range(num_steps)]
        if skip_zero:
            levels = [v for v in levels if v != 0] or [end]
        return levels[t * len(levels) // total]

    def value(p: float) -> float:
        if shape == 'linear':
            return start + (end - start) * p
        return end + (start - end) * (1 + math.cos(math.pi * p)) / 2

    if skip_zero and start * end <= 0 and start != end:
        k = t if value(t / total) * start > 0 else t + 1
        return value(k / total)
    return value(t / max(total - 1, 1))


@HOOKS.register_module()
class CurriculumHook(Hook):
    """Set the model's curriculum factor c(t) before each train iteration.

    Args:
        start, end: c at the first and at the last iteration (published
            +1 → −1).
        shape: ``'linear'``, ``'cosine'`` or ``'step'``
            (see :func:`curriculum_value`).
        skip_zero: never use c = 0 (published: skipped).
        num_steps: number of plateaus of the ``step`` shape.
        by_epoch: c changes once per epoch (t = epoch, total = max_epochs;
            needs an epoch-based loop; the published setting) instead of
            every iteration (t = iteration, total = max_iters; any loop).

    The value goes to ``model.set_curriculum(c)`` (the ``curriculum_factor``
    buffer of :class:`~mlmask_mm.models.algorithms.CLMAE`, saved in
    checkpoints) and to the log as ``train/curriculum_c``.  Since it is a
    function of the iteration it is the same after a resume as in an
    uninterrupted run.
    """

    priority = 'NORMAL'

    def __init__(self, start: float = 1.0, end: float = -1.0,
                 shape: str = 'linear', skip_zero: bool = True,
                 num_steps: int = 2, by_epoch: bool = False) -> None:
        if shape not in SHAPES:
            raise ValueError(f'shape must be one of {SHAPES}, got {shape!r}')
        self.start, self.end = float(start), float(end)
        self.shape = shape
        self.skip_zero = skip_zero
        self.num_steps = int(num_steps)
        self.by_epoch = by_epoch
        self.value: Optional[float] = None

    def before_train(self, runner) -> None:
        if self.by_epoch and isinstance(runner.train_loop,
                                        IterBasedTrainLoop):
            raise ValueError('CurriculumHook(by_epoch=True) needs an '
                             'epoch-based train loop; use by_epoch=False '
                             'with IterBasedTrainLoop')
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not hasattr(model, 'set_curriculum'):
            raise TypeError('CurriculumHook needs a model with '
                            f'set_curriculum(c), got {type(model).__name__}')

    def value_at(self, runner) -> float:
        if self.by_epoch:
            t, total = runner.epoch, runner.max_epochs
        else:
            t, total = runner.iter, runner.max_iters
        return curriculum_value(min(t, total - 1), total, self.start,
                                self.end, self.shape, self.skip_zero,
                                self.num_steps)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self.value = self.value_at(runner)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        model.set_curriculum(self.value)
        runner.message_hub.update_scalar('train/curriculum_c', self.value)
