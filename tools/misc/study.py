"""Equal-budget study of pretraining configs (docs/study.md).

    python tools/misc/study.py CONFIG [CONFIG ...] --data ROOT
        (--iters N | --epochs E) [--cost CONFIG=RATIO ...] [--cost-file JSON]
        [--seeds 0 1] [--train-split train] [--val-split val]
        [--probes linear fewshot] [--probe-config CONFIG] [--probe-epochs E]
        [--shots 1 2 4 8 16] [--fewshot-seeds 3] [--out-dir work_dirs/study]
        [--dry-run] [--in-process]

For every config and seed: pretrain (tools/train.py, resumed when
restarted), convert (tools/model_converters/mlmask2backbone.py), linear
probe on the frozen backbone (fit on the train part, tools/test.py on the
val part) and few-shot probe (tools/analysis_tools/fewshot.py); then study.md / study.json
(mean ± std over seeds), study.png and commands.sh in --out-dir.  Steps whose
outputs exist are skipped.  The logic is mlmask_mm/evaluation/study.py.
"""
import sys

from mlmask_mm.evaluation.study import main

if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        sys.exit(f'error: {e}')
