"""GPU mode of the CIFAR-10 study (docs/study.md, "GPU mode").

    python tools/misc/study_gpu.py data/cifar10_fewshot \
        [--out-dir work_dirs/study_gpu] [--iters 4000] [--batch-size 256] \
        [--seeds 0 1] [--cost-file JSON] [--root DIR] [--dry-run] \
        [-- STUDY_ARGS ...]

MAE, MLO-MAE (continued from the MAE run), Self-Guided MAE, CL-MAE and the
randomly initialised encoder with the CPU study's probes, on one GPU, every
step in this process; cost ratios measured on the GPU first.  The logic is
tools/study/gpu_mode.py.
"""
import os.path as osp
import sys

TOOLS_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
if sys.path[:1] != [TOOLS_DIR]:  # tools/study and tools/benchmark, ahead of
    # tools/misc (a script folder with its own study.py)
    sys.path.insert(0, TOOLS_DIR)

from study.gpu_mode import main  # noqa: E402

if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        sys.exit(f'error: {e}')
