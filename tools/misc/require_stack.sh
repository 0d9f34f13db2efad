# Sourced by tools/{dist,slurm}_{train,test}.sh: one clear error, before any
# process per GPU starts, when PYTHON is not the environment `make demo`
# builds (README: source .venv/bin/activate).
#
#   . "$(dirname "$0")/misc/require_stack.sh"; require_stack "$PYTHON" "$0"
require_stack() {
    if ! "$1" -c 'import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("torch", "mmengine", "mmpretrain")))' \
            2>/dev/null; then
        echo "$2: PYTHON=$1 lacks torch, mmengine or mmpretrain: run" \
             "'source .venv/bin/activate' first (the environment 'make demo'" \
             "builds), or set PYTHON=.venv/bin/python" >&2
        exit 2
    fi
}
