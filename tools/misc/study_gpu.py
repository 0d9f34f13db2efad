"""GPU mode of the CIFAR-10 study (docs/study.md, "GPU mode").

    python tools/misc/study_gpu.py data/cifar10_fewshot \
        [--out-dir work_dirs/study_gpu] [--iters 4000] [--batch-size 256] \
        [--seeds 0 1] [--cost-file JSON] [--dry-run] [-- STUDY_ARGS ...]

MAE, MLO-MAE (continued from the MAE run), Self-Guided MAE, CL-MAE and the
randomly initialised encoder with the CPU study's probes, on one GPU, every
step in this process; cost ratios measured on the GPU first.  The logic is
mlmask_mm/evaluation/study_gpu.py.
"""
import sys

from mlmask_mm.evaluation.study_gpu import main

if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        sys.exit(f'error: {e}')
