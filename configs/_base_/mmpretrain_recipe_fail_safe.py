# What a config on an mmpretrain recipe (`mmpretrain::...` in its _base_)
# adds to it: this package's import and the fail-safe hooks of
# default_runtime.py (docs/fail_safe.md), which mmpretrain's runtime lacks.
# The recipe defines default_hooks and default_scope already, and mmengine
# refuses a key in two bases, so the config takes them from here:
#   _base_ = ['mmpretrain::...', '../_base_/mmpretrain_recipe_fail_safe.py']
#   default_hooks = _base_.fail_safe_hooks
#   default_scope = 'mlmask_mm'
custom_imports = dict(imports=['mlmask_mm'], allow_failed_imports=False)
fail_safe_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='local_atomic')),
    finite_loss=dict(type='mlmask_mm.FiniteLossHook', tolerance=0),
    skipped_images=dict(type='mlmask_mm.SkippedImagesHook'),
    # RNG states in checkpoints, restored on resume (exact resumes)
    rng_state=dict(type='mlmask_mm.RNGStateHook'),
    # SIGTERM / SIGUSR1 (slurm's time limit, preemption): save and exit 75
    preemption=dict(type='mlmask_mm.PreemptionHook'))
