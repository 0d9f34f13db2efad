#!/usr/bin/env bash
# GPU acceptance run (docs/gpu_acceptance.md): every method's ViT-B/16 config,
# the benchmark CLI and the transfer configs on generated data, one JSON report.
#
#   bash tools/misc/gpu_acceptance.sh [--out DIR] [--budget S] [...]   all steps
#   bash tools/misc/gpu_acceptance.sh --fast-path-only [--out DIR] \
#       [--bench-batch-size 256] [--bench-iters 10]
#
# --fast-path-only times, interleaved in one process, ViT-B/16 at 224 px,
# batch 256, bf16: mmpretrain's MAE config; ours on mmpretrain's eager modules;
# ours on the fast path, eager; ours on the fast path compiled (the config as
# shipped on a GPU): the 'ours, fast path' row of docs/benchmarks.md.
# Python: $PYTHON, else .venv/bin/python when present, else python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"  # relative --out paths are under the repository, as before
exec "$PY" tools/misc/gpu_acceptance.py "$@"
