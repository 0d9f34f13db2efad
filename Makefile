# Commands for users (see README.md; other commands run inside .venv:
# `source .venv/bin/activate`):
#   make demo          venv + pinned stack + a small MAE pretraining run on the embedded data
#   make install-full  the same stack + full mmcv (built once, cached), mmseg, mmdet
#   make test          make install-full, then the test suite (slowest 25 listed)
#   make test-quick    the tests not marked slow (no multi-process, transfer or
#                      compile runs), without the mmcv build
#   make demo-cl-mae   venv + the CL-MAE demo run (learned masks, curriculum)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORE   := $(VENV)/.core-installed
FULL   := $(VENV)/.mmcv-installed

.PHONY: demo demo-cl-mae test test-quick install install-full clean

install: $(CORE)

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77.0.3,<82" wheel
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	@# mmcv-lite unless a full mmcv (tools/install_mmcv.sh) is already there
	$(PY) -c "import importlib.metadata as m; m.version('mmcv')" 2>/dev/null \
	  || $(PY) -m pip install -q mmcv-lite==2.1.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install-full: $(FULL)

$(FULL): $(CORE) tools/install_mmcv.sh
	bash tools/install_mmcv.sh $(PY)
	@# transfer stack (mmseg, mmdet) on top of the full mmcv: ~15 s
	$(PY) -m pip install -q -e ".[dev,seg,det]"
	@# betty (the official MLO-MAE code's library), only for the differential
	@# test tests/test_models/test_utils/test_mlo_betty.py: pure Python, declares Python<3.11
	$(PY) -m pip install -q --no-deps --ignore-requires-python betty-ml==0.2.1
	$(PY) -c "import mlmask_mm, mmseg.models, mmdet.models, pycocotools"
	touch $@

demo: $(CORE)
	$(PY) tools/train.py configs/mae/mae_vit-tiny-p4_demo.py --work-dir work_dirs/demo
	@echo "checkpoint: work_dirs/demo/iter_400.pth   picture: work_dirs/demo/masks_final.png"

# CL-MAE's demo (~5 min on 2 CPU cores): the module's masks from the partner
# to the adversary phase of the curriculum
demo-cl-mae: $(CORE)
	$(PY) tools/train.py configs/cl_mae/cl-mae_vit-tiny-p4_demo.py --work-dir work_dirs/cl_mae_demo
	@echo "pictures: work_dirs/cl_mae_demo/masks_iter_50.png ... masks_final.png"

# MLMASK_MM_FULL_STACK=1: a test needing mmseg/mmdet/mmcv.ops fails, not
# skips, if that part is missing (tests/conftest.py)
test: $(FULL)
	MLMASK_MM_FULL_STACK=1 $(PY) -m pytest tests -q --durations=25

# the fast subset while developing: needs only `make install` (tests needing
# mmseg / mmdet / full mmcv skip without them)
test-quick: $(CORE)
	$(PY) -m pytest tests -q -m "not slow" --durations=10

clean:
	rm -rf $(VENV) work_dirs
