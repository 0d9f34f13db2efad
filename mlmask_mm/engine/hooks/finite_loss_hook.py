"""Stop training at the first non-finite loss, before anything is saved.

See docs/fail_safe.md.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper, OptimWrapperDict

from mlmask_mm.registry import HOOKS
from mlmask_mm.utils.checkpoint_schedule import checkpoint_due


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or Inf (a loss, a gradient, a parameter)."""


def non_finite_values(outputs) -> Dict[str, float]:
    """``{name: value}`` of the non-finite numbers in a ``train_step``
    output dict (tensors: the first non-finite element)."""
    bad = {}
    for name, value in (outputs or {}).items():
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point() and not value.is_complex():
                continue
            finite = torch.isfinite(value.detach())
            if not bool(finite.all()):
                bad[name] = float(value.detach()[~finite].flatten()[0])
        elif isinstance(value, float) and not math.isfinite(value):
            bad[name] = value
    return bad


def non_finite_tensors(named_tensors) -> List[str]:
    """Names of the floating-point tensors holding a NaN or Inf."""
    return [name for name, t in named_tensors
            if isinstance(t, torch.Tensor) and t.is_floating_point()
            and not bool(torch.isfinite(t).all())]


def _optim_wrappers(runner):
    wrapper = runner.optim_wrapper
    if isinstance(wrapper, OptimWrapperDict):
        return list(wrapper.items())
    return [('', wrapper)]


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop at the first NaN / Inf loss; never save non-finite parameters.

    After every training iteration every value the model's step returns
    (the ``log_vars`` the logger prints: MAE's ``loss``, CL-MAE's ``loss``,
    ``loss_masker`` and its terms, MLO-MAE's ``loss_mae``, ``loss_head``,
    ``loss_val``, ``hypergrad_norm`` ...) is checked.  On the first
    non-finite one the run stops with a :class:`NonFiniteError` naming the
    value, the iteration and the learning rates, *before* the
    ``CheckpointHook`` of that iteration saves or rotates.  When a
    checkpoint is due, the model's parameters and buffers are checked too
    (a step can make them non-finite with a finite loss); and any
    checkpoint about to be written is checked once more.  The newest
    checkpoint of the work directory is therefore always finite, and
    ``max_keep_ckpts`` never deletes a good one for a bad one.

    ``default_hooks.finite_loss`` in ``configs/_base_/default_runtime.py``.

    Args:
        tolerance (int): non-finite iterations in a row that are tolerated
            (as a loss scaler does): an optimizer step whose gradients are
            not finite is skipped (parameters unchanged) and a warning is
            logged; the ``tolerance + 1``-th non-finite iteration in a row
            stops the run.  ``AmpOptimWrapper`` already skips such steps
            (its loss scaler) and is left to it.  Defaults to 0 (stop at
            the first).
        keys (Sequence[str], optional): check only these output names.
            Defaults to None (every floating-point output).
    """

    # after RuntimeInfoHook (VERY_HIGH) has recorded the outputs, before
    # ParamSchedulerHook (LOW) and RNGStateHook / CheckpointHook (85 / 90)
    priority = 'ABOVE_NORMAL'

    def __init__(self, tolerance: int = 0,
                 keys: Optional[Sequence[str]] = None) -> None:
        if not isinstance(tolerance, int) or tolerance < 0:
            raise ValueError(
                'FiniteLossHook: tolerance must be an int >= 0 (non-finite '
                f'iterations in a row to skip), got {tolerance!r}')
        self.tolerance = tolerance
        self.keys = None if keys is None else tuple(keys)
        self.in_a_row = 0
        self.skipped_iters: List[int] = []
        self._skipped_steps: List[str] = []

    # ------------------------------------------------------- step guard
    def before_train(self, runner) -> None:
        if self.tolerance == 0:
            return
        for name, wrapper in _optim_wrappers(runner):
            # an enabled scaler skips non-finite steps itself
            # (BF16AmpOptimWrapper in bf16 has none)
            scaler = getattr(wrapper, 'loss_scaler', None)
            if (isinstance(wrapper, AmpOptimWrapper) and scaler is not None
                    and scaler.is_enabled()) or \
                    getattr(wrapper, '_finite_guard', False):
                continue
            wrapper.step = self._guarded_step(wrapper, name or 'optimizer')
            wrapper._finite_guard = True

    def _guarded_step(self, wrapper, name: str):
        step = wrapper.step

        def guarded(*args, **kwargs):
            grads = [p.grad for group in wrapper.optimizer.param_groups
                     for p in group['params'] if p.grad is not None]
            if grads and not bool(torch.stack(
                    [torch.isfinite(g).all() for g in grads]).all()):
                self._skipped_steps.append(name)
                return None
            return step(*args, **kwargs)

        # mmengine's schedulers mark the step they count with this flag
        if getattr(step, '_with_counter', False):
            guarded._with_counter = True
        return guarded

    # ----------------------------------------------------------- checks
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        values = outputs if isinstance(outputs, dict) else {}
        if self.keys is not None:
            values = {k: v for k, v in values.items() if k in self.keys}
        bad = non_finite_values(values)
        skipped, self._skipped_steps = self._skipped_steps, []
        flag = bool(bad or skipped)
        if get_world_size() > 1:  # every rank stops, or none
            t = torch.tensor([float(flag)], device=_device(runner))
            all_reduce(t, op='max')
            flag = bool(t.item())
        if flag:
            self._non_finite(runner, bad, skipped)
        else:
            self.in_a_row = 0
        if checkpoint_due(runner, by_epoch=False):
            self._check_parameters(runner, f'iteration {runner.iter + 1}')

    def after_train_epoch(self, runner) -> None:
        if checkpoint_due(runner, by_epoch=True):
            self._check_parameters(runner, f'epoch {runner.epoch + 1}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = non_finite_tensors((checkpoint.get('state_dict') or {}).items())
        if bad:
            meta = checkpoint.get('meta') or {}
            raise NonFiniteError(
                f'FiniteLossHook: not saving a checkpoint after iteration '
                f'{meta.get("iter", runner.iter)} (epoch '
                f'{meta.get("epoch", runner.epoch)}): non-finite '
                f'parameters {_some(bad)}; {self._lrs(runner)}')

    # ---------------------------------------------------------- helpers
    def _non_finite(self, runner, bad: Dict[str, float],
                    skipped: List[str]) -> None:
        iteration = runner.iter + 1
        self.in_a_row += 1
        what = ', '.join(f'{k}={v}' for k, v in bad.items()) or (
            'a loss on another process' if not skipped else
            f'the gradients of {", ".join(sorted(set(skipped)))}')
        where = (f'at iteration {iteration} (epoch {runner.epoch + 1}): '
                 f'{what}; {self._lrs(runner)}')
        if self.in_a_row <= self.tolerance:
            self.skipped_iters.append(iteration)
            steps = (f'optimizer steps skipped: {", ".join(skipped)}'
                     if skipped else 'no optimizer step had non-finite '
                     'gradients')
            runner.logger.warning(
                f'FiniteLossHook: non-finite {where}; {steps} '
                f'({self.in_a_row} of tolerance={self.tolerance} in a row)')
            return
        last = runner.message_hub.get_info('last_ckpt')
        saved = (f'the newest checkpoint is {last}' if last else
                 'no checkpoint was written')
        advice = ('lower the learning rate, or set default_hooks.finite_loss.'
                  'tolerance=N to skip up to N such iterations in a row')
        if self.tolerance:
            advice = (f'{self.in_a_row} non-finite iterations in a row '
                      f'(tolerance={self.tolerance}); lower the learning '
                      'rate')
        raise NonFiniteError(
            f'FiniteLossHook: non-finite {where}. Training stopped before '
            f'saving this iteration; {saved}. To go on: {advice}, then '
            'resume (--resume)')

    def _check_parameters(self, runner, when: str) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') \
            else runner.model
        bad = non_finite_tensors(model.state_dict().items())
        if bad:
            last = runner.message_hub.get_info('last_ckpt')
            raise NonFiniteError(
                f'FiniteLossHook: the parameters are not finite after '
                f'{when} ({_some(bad)}) although the losses were; '
                f'{self._lrs(runner)}. Training stopped without saving or '
                f'rotating checkpoints; the newest checkpoint is {last}')

    @staticmethod
    def _lrs(runner) -> str:
        try:
            lrs = runner.optim_wrapper.get_lr()
        except Exception:  # noqa: BLE001  (only for the message)
            return 'learning rates unknown'
        parts = []
        for name, values in lrs.items():
            if name.endswith('base_lr'):  # the schedule's start, not now
                continue
            values = sorted(set(float(v) for v in values))
            shown = ', '.join(f'{v:.4g}' for v in values[:4])
            more = ', ...' if len(values) > 4 else ''
            parts.append(f'{name}={shown}' if len(values) == 1 else
                         f'{name}=[{shown}{more}]')
        return 'learning rates ' + ', '.join(parts)


def _some(names: List[str], n: int = 3) -> str:
    more = f' and {len(names) - n} more' if len(names) > n else ''
    return ', '.join(names[:n]) + more


def _device(runner) -> torch.device:
    for p in runner.model.parameters():
        return p.device
    return torch.device('cpu')
