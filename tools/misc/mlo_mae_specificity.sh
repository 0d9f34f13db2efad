#!/usr/bin/env bash
# MLO-MAE at the paper's masking-network learning rate (1e-3): does the
# network keep masks image-specific?  Runs the CPU demo config twice, short,
# with the masker updated every outer iteration -- the paper's network
# (MLOMLPMasker, the default) and the per-token option (MLOTokenMasker) --
# and prints mask_specificity (1 ~ each image its own mask, 0 = one position
# pattern for all) and mask_shared from the logs (docs/mlo_mae.md).
#   [PYTHON=.venv/bin/python] bash tools/misc/mlo_mae_specificity.sh [work_root] [iters]
set -euo pipefail
mkdir -p "${1:-work_dirs/mlo_specificity}"
root=${1:-work_dirs/mlo_specificity}
iters=${2:-24}
python=${PYTHON:-python}
common=(optim_wrapper.masker.optimizer.lr=1e-3
        param_scheduler.masker.0.start_factor=1.0
        train_cfg.max_iters="$iters" train_cfg.masker_update_interval=1
        train_cfg.val_interval=100000 default_hooks.logger.interval=4
        default_hooks.checkpoint.interval=100000 "custom_hooks=[]")
for masker in MLOMLPMasker MLOTokenMasker; do
  extra=()
  [ "$masker" = MLOTokenMasker ] && extra=(model.masker.type=MLOTokenMasker
                                           model.masker.hidden_dims=128)
  "$python" tools/train.py configs/mlo_mae/mlo-mae_vit-tiny-p4_demo.py \
    --work-dir "$root/$masker" --cfg-options "${common[@]}" "${extra[@]}" \
    > "$root.$masker.out" 2>&1
  echo "== $masker, masker lr 1e-3"
  grep -h -o 'Iter(train) \[ *[0-9]*/[0-9]*\]\|mask_specificity: [0-9.]*\|mask_shared: [0-9.]*\|mask_prob_saturated: [0-9.]*' \
    "$(ls -t "$root/$masker"/*/*.log | head -1)" | paste -d' ' - - - -
done
