#!/usr/bin/env bash
# One-command GPU acceptance run (docs/benchmarks.md, "GPU acceptance run"):
#   bash tools/misc/gpu_acceptance.sh [--out DIR] [--budget SECONDS] [--tiny] ...
# Python: $PYTHON, else .venv/bin/python when present, else python3.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" tools/misc/gpu_acceptance.py "$@"
