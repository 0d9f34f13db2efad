# Runtime shared by every mlmask_mm config.
custom_imports = dict(imports=['mlmask_mm'], allow_failed_imports=False)
default_scope = 'mlmask_mm'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # written to a temporary name, then renamed (mlmask_mm/utils/
    # checkpoint_files.py): a killed save leaves no half-written checkpoint
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    backend_args=dict(backend='local_atomic')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # RNG states in checkpoints, restored on resume (exact resumes)
    rng_state=dict(type='mlmask_mm.RNGStateHook'),
    # stop at the first NaN/Inf loss, before a non-finite checkpoint is
    # saved or a good one rotated out (tolerance=N: skip N in a row)
    finite_loss=dict(type='mlmask_mm.FiniteLossHook', tolerance=0),
    # lists the images ImageFolder(bad_images='skip') replaced
    skipped_images=dict(type='mlmask_mm.SkippedImagesHook'),
    # SIGTERM / SIGUSR1 (slurm): save this iteration, exit 75; the next
    # start resumes (enabled=False: off; requeue=True: scontrol requeue)
    preemption=dict(type='mlmask_mm.PreemptionHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when no GPU is present
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, diff_rank_seed=True)
