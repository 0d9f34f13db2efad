#!/usr/bin/env bash
# Install full mmcv 2.1.0 (with compiled ops) into the current Python.
#
# PyPI has no mmcv 2.1.0 wheel for recent torch, so build one from the sdist:
#   - C++ standard flags switched to -std=c++20 (ATen's headers need C++20),
#   - setuptools 77-81 (torch 2.14 needs >= 77.0.3; mmcv's setup.py imports
#     pkg_resources, removed in 82),
#   - MMCV_WITH_OPS=1, --no-build-isolation; CUDA ops when FORCE_CUDA=1 or a
#     GPU is visible, CPU ops otherwise.
# The wheel is cached in ${MLMASK_CACHE:-~/.cache/mlmask_mm}, keyed by Python,
# torch and CUDA/CPU, so the 15-25 minute build runs once per machine.
#
# Usage: tools/install_mmcv.sh [PYTHON]   (default: python3 on PATH)
set -euo pipefail
PY=$("${1:-python3}" -c "import sys; print(sys.executable)")
MMCV_VERSION=2.1.0
CACHE=${MLMASK_CACHE:-$HOME/.cache/mlmask_mm}

if [ -z "${FORCE_CUDA:-}" ]; then
  if "$PY" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    FORCE_CUDA=1
  else
    FORCE_CUDA=0
  fi
fi
tag=$("$PY" -c 'import sys,torch; v=sys.version_info; print("py%d%d-torch%s" % (v[0], v[1], torch.__version__.split("+")[0]))')
flavour=$([ "$FORCE_CUDA" = 1 ] && echo cuda || echo cpu)
wheel_dir="$CACHE/mmcv-$MMCV_VERSION-$tag-$flavour"

installed=$("$PY" - <<'PY'
try:
    import importlib.metadata as m
    print(m.version('mmcv'))
except Exception:
    print('')
PY
)
if [ "$installed" = "$MMCV_VERSION" ] && "$PY" -c 'import mmcv.ops' 2>/dev/null; then
  echo "[install_mmcv] mmcv $MMCV_VERSION with ops is already installed"
  exit 0
fi

if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[install_mmcv] building mmcv $MMCV_VERSION ($flavour ops) into $wheel_dir"
  echo "[install_mmcv] this takes 15-25 minutes on 2 cores, once per machine"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip install -q "setuptools>=77.0.3,<82" wheel ninja
  "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
    "mmcv==$MMCV_VERSION" -d "$work"
  tar -xzf "$work"/mmcv-$MMCV_VERSION.tar.gz -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  sed -i 's/-std=c++14/-std=c++20/g; s/-std=c++17/-std=c++20/g' "$src/setup.py"
  (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS=${MAX_JOBS:-$(nproc)} \
     "$PY" -m pip wheel -q --no-build-isolation --no-deps . -w "$work/dist")
  mkdir -p "$wheel_dir"
  cp "$work"/dist/mmcv-*.whl "$wheel_dir/"
fi

# mmcv-lite and mmcv install the same `mmcv` package: keep exactly one
"$PY" -m pip uninstall -q -y mmcv-lite 2>/dev/null || true
"$PY" -m pip install -q --no-deps --force-reinstall "$wheel_dir"/mmcv-*.whl
"$PY" -c 'import mmcv.ops; from mmcv.ops import nms, roi_align; print("[install_mmcv] mmcv", __import__("mmcv").__version__, "with ops OK")'
