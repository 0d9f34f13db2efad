"""When mmengine's ``CheckpointHook`` saves: hooks that must act before a
save (check the parameters, gather RNG states) ask here."""
from mmengine.hooks import CheckpointHook


def checkpoint_due(runner, by_epoch: bool) -> bool:
    """Whether a ``CheckpointHook`` saves (and rotates) at the end of this
    iteration (``by_epoch=False``) or epoch (``by_epoch=True``)."""
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
            continue
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) \
                or (hook.save_last and hook.is_last_train_epoch(runner))
        else:
            due = hook.every_n_train_iters(
                runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_iter(runner))
        if due:
            return True
    return False
