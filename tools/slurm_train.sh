#!/usr/bin/env bash
# Training on a Slurm cluster (mmpretrain's tools/slurm_train.sh): one task
# per GPU, ranks from Slurm (--launcher slurm).
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args ...]
#
# Environment: GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK
# (5), SRUN_ARGS (more srun options), PYTHON (default: python).
#
# Time limits and preemption (PreemptionHook, docs/fail_safe.md): on SIGTERM
# or SIGUSR1 every rank stops after the current iteration, its checkpoint is
# saved and the tasks exit with status 75; running this command again with
# the same WORK_DIR resumes from it.  Ask for the warning signal with
#
#   SRUN_ARGS="--signal=USR1@120" tools/slurm_train.sh ...
#
# (SIGUSR1 to every task 120 s before the time limit).  To be requeued, run
# srun from a batch script instead, with
#
#   #SBATCH --signal=USR1@120
#   #SBATCH --requeue
#
# and --cfg-options default_hooks.preemption.requeue=True (rank 0 then runs
# scontrol requeue $SLURM_JOB_ID once the checkpoint is written).
set -e

if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args ...]" >&2
    exit 2
fi

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
. "$(dirname "$0")/misc/require_stack.sh"
require_stack "$PYTHON" "$0"

# SRUN_ARGS is split into words on purpose (several options)
# shellcheck disable=SC2086
PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$(dirname "$0")/train.py" "$CONFIG" \
    --work-dir="$WORK_DIR" --launcher slurm "${@:5}"
