"""Equal-budget study of pretraining configs (docs/study.md).

    python tools/misc/study.py CONFIG [CONFIG ...] --data ROOT
        (--iters N | --epochs E) [--cost CONFIG=RATIO ...] [--cost-file JSON]
        [--seeds 0 1] [--train-split train] [--val-split val]
        [--probes linear fewshot] [--probe-config CONFIG] [--probe-epochs E]
        [--shots 1 2 4 8 16] [--fewshot-seeds 3] [--out-dir work_dirs/study]
        [--root DIR] [--dry-run] [--in-process]

For every config and seed: pretrain (tools/train.py, resumed when
restarted), convert (tools/model_converters/mlmask2backbone.py), linear
probe on the frozen backbone (fit on the train part, tools/test.py on the
val part) and few-shot probe (tools/analysis_tools/fewshot.py); then study.md / study.json
(mean ± std over seeds), study.png and commands.sh in --out-dir.  Steps whose
outputs exist are skipped.  The tools are those of the checkout at --root
(default: the current working directory), which is also the steps' working
directory.  The logic is tools/study/.
"""
import os.path as osp
import sys

TOOLS_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
if sys.path[:1] != [TOOLS_DIR]:  # the harness package tools/study, ahead of
    # tools/misc (a script folder with its own study.py)
    sys.path.insert(0, TOOLS_DIR)

from study import main  # noqa: E402

if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        sys.exit(f'error: {e}')
