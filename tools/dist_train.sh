#!/usr/bin/env bash
# Distributed training with torchrun (mmpretrain's tools/dist_train.sh).
#
#   tools/dist_train.sh CONFIG GPUS [train.py args ...]
#
# GPUS is the number of processes on this node (one per GPU; on a machine
# without GPUs, CPU processes on the gloo backend).  Multi-node runs set
# NNODES, NODE_RANK, MASTER_ADDR and PORT on each node.  PYTHON selects the
# interpreter (default: the `python` of the active environment, e.g. after
# `source .venv/bin/activate`; or PYTHON=.venv/bin/python).
set -e

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args ...]" >&2
    exit 2
fi

CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
. "$(dirname "$0")/misc/require_stack.sh"
require_stack "$PYTHON" "$0"

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
