# ultralytics-biformer: pinned upstream Ultralytics + our overlay + patch series. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# test and export extras, pinned: offline, Ultralytics cannot install what an export or a test asks for
DEV_EXTRAS := wheel==0.48.0 pytest==9.2.0 pytest-xdist==3.8.0 execnet==2.1.2 onnx==1.23.2 onnxruntime==1.32.0 \
	onnxslim==0.1.98 openvino==2026.4.1
COMPARE_EXTRAS := faster-coco-eval==1.8.0
# the deploy matrix's breadth runtimes (tests/deploy/test_runtimes.py), with what they use but do not declare (x2paddle
# imports six; ncnn's own dependencies, which upstream skips with --no-deps, pinned here); protobuf below 7, upstream's
# cap for PaddlePaddle, and at least 6.31.1 for onnx. TensorFlow cannot join: see docs/deploy.md
RUNTIME_EXTRAS := ncnn==1.0.20261020 portalocker==4.4.2 tqdm==4.70.1 pnnx==20260526 MNN==3.6.1 paddlepaddle==3.2.2 \
	x2paddle==1.6.0 six==1.17.0 protobuf==6.33.6 executorch==1.5.1
# LiteRT, installed last: litert-converter's xdsl needs typing-extensions<4.13 (4.16 before), and with it cattrs 25.2
# (ExecuTorch's coremltools brings cattrs, whose 26.x needs typing-extensions>=4.14); pydantic pinned to spare pip's
# backtracking
LITERT_EXTRAS := litert-torch==0.10.0 ai-edge-litert==2.3.0 typing-extensions==4.12.2 cattrs==25.2.0 pydantic==2.11.10
PYTEST_ARGS ?=
# pytest processes of make test (pytest-xdist; 0: in this process). Ultralytics runs torch on cores-1 threads, one on
# a 2-core machine, so two processes use both cores; tests/fixture_groups.py keeps each group of shared fixtures in one
PYTEST_WORKERS ?= 2
BENCH_ARGS ?=
# make train: override on the command line, e.g. `make train DATA=/path/data.yaml EPOCHS=100 IMGSZ=640 DEVICE=0`
MODEL ?= rtdetr-l-HGBlock_Biformer.yaml
DATA ?=
EPOCHS ?= 3
IMGSZ ?= 160
BATCH ?= 4
DEVICE ?= cpu
WORKERS ?= 0
PROJECT ?= $(CURDIR)/build/runs
SYNTHETIC_DATA := $(CURDIR)/build/synthetic/data.yaml
SYNTHETIC_TRAIN := 32
SYNTHETIC_VAL := 8
REAL_RUN := make train DATA=/abs/path/data.yaml EPOCHS=100 IMGSZ=640 BATCH=16 DEVICE=0
# make compare: the variables of make train, plus MODELS (comma-separated, the first is the baseline), SEEDS (a count,
# or a list such as 0,3,7), FORMATS (exports to validate too, e.g. onnx,openvino) and ARGS (any other train arguments,
# e.g. ARGS="lr0=0.0001 patience=20"); see docs/compare.md
MODELS ?= rtdetr-l.yaml,rtdetr-l-Biformer.yaml,rtdetr-l-HGBlock_Biformer.yaml
SEEDS ?= 1
FORMATS ?=
ARGS ?=
COMPARE_DATA := $(CURDIR)/build/synthetic-compare/data.yaml

# Every target runs Ultralytics offline, with a private config dir (sync off, local Arial.ttf).
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export YOLO_CONFIG_DIR := $(CURDIR)/build/yolo-config
export MPLBACKEND := Agg

.PHONY: help venv develop offline test train bench wheel sdist diff fork export-patches check-patches rebase clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

venv: $(VENV)/.installed  ## .venv: torch pins first, then the fork (development mode), then test/export extras

$(VENV)/.installed: pyproject.toml upstream.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet --editable .
	$(PY) -m pip install --quiet $(DEV_EXTRAS)
	$(PY) -m pip install --quiet $(COMPARE_EXTRAS)
	$(PY) -m pip install --quiet $(RUNTIME_EXTRAS)
	$(PY) -m pip install --quiet $(LITERT_EXTRAS)
	touch $@

develop: venv  ## restage build/editable if patches, pin or the overlay file list changed
	$(PY) -m fork_build develop >/dev/null

offline: venv
	$(PY) tools/yolo_offline.py >/dev/null

test: develop offline  ## the whole test suite (PYTEST_ARGS=...: only that pytest run, no upstream suite)
	$(PY) -m pytest -rs --durations=25 -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,$(PY) tools/upstream_tests.py)

.PHONY: test-compile
test-compile: develop offline  ## the compile=True cells with inductor, as Ultralytics compiles (over 20 min a model on 2 cores)
	$(PY) -m pytest -rs tests/deploy/test_compile.py --compile-backend=inductor

.PHONY: test-upstream
test-upstream: develop  ## upstream 8.4.190's own tests (tests/upstream/selection.txt) on the fork, offline
	$(PY) tools/upstream_tests.py

train: develop offline $(if $(DATA),,$(SYNTHETIC_DATA))  ## train MODEL on DATA (default: a generated dataset); see docs/usage.md
	$(VENV)/bin/yolo detect train model=$(MODEL) data=$(or $(DATA),$(SYNTHETIC_DATA)) epochs=$(EPOCHS) imgsz=$(IMGSZ) \
		batch=$(BATCH) device=$(DEVICE) workers=$(WORKERS) project=$(PROJECT) name=train exist_ok=True
	@echo "make train: results in $(PROJECT)/train (weights/best.pt, weights/last.pt, results.csv)"
	$(if $(DATA),,@echo "make train: this was a pipeline check (EPOCHS=$(EPOCHS) from scratch on $(SYNTHETIC_TRAIN) generated \
		images at $(IMGSZ) px): far too little for RT-DETR to learn, so mAP near 0 is expected. A real run: $(REAL_RUN)")

$(SYNTHETIC_DATA): tools/synthetic_dataset.py | venv
	$(PY) tools/synthetic_dataset.py --out $(dir $@) --train $(SYNTHETIC_TRAIN) --val $(SYNTHETIC_VAL) --imgsz 320 --seed 0

.PHONY: compare
compare: develop offline $(if $(DATA),,$(COMPARE_DATA))  ## train MODELS alike on DATA -> PROJECT/compare (table, figure)
	$(PY) -m ultralytics.biformer.compare models=$(MODELS) data=$(or $(DATA),$(COMPARE_DATA)) epochs=$(EPOCHS) \
		imgsz=$(IMGSZ) batch=$(BATCH) device=$(DEVICE) workers=$(WORKERS) project=$(PROJECT) seeds=$(SEEDS) \
		$(if $(FORMATS),formats=$(FORMATS)) $(ARGS)

$(COMPARE_DATA): tools/synthetic_dataset.py | venv
	$(PY) tools/synthetic_dataset.py --out $(dir $@) --train 8 --val 8 --imgsz 160 --seed 0

bench: develop offline  ## BRA, whole-model and deployed (onnxruntime, OpenVINO) ratios -> benchmarks/results (BENCH_ARGS=--quick)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# make gpu-check: variables of its own (DEVICE is make train's; OUT is set on the GPU machines); docs/gpu.md
GPU ?= 0
REPORT ?= build/gpu-check
QUICK ?=
GPU_WHEELS := build/gpu-wheels
# what a GPU machine of this project lacks besides the fork (docs/gpu.md); the versions the venv runs
GPU_WHEEL_PINS := polars==2.1.0 polars-runtime-32==2.1.0 ultralytics-thop==2.2.3

.PHONY: gpu-check gpu-wheels
gpu-check: develop offline  ## GPU acceptance run -> REPORT (GPU=0; GPU=cpu QUICK=1 is the dry run make test runs)
	$(PY) tools/gpu_check.py --device $(GPU) --report $(REPORT) $(if $(QUICK),--quick)

gpu-wheels: venv  ## the fork's wheel and what GPU machines lack -> build/gpu-wheels (pip install --no-index there)
	rm -rf $(GPU_WHEELS)
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir $(GPU_WHEELS) .
	$(PY) -m pip download --quiet --no-deps --dest $(GPU_WHEELS) $(GPU_WHEEL_PINS)
	@du -sh $(GPU_WHEELS)

wheel: venv  ## build the fork's wheel into dist/
	$(PY) -m pip wheel --no-deps --wheel-dir dist .

sdist: venv  ## build the fork's sdist (our files only) into dist/
	$(PY) -c "import fork_build; print(fork_build.build_sdist('dist'))"

diff: venv  ## file list, then unified diff, of the built fork against pristine upstream
	@$(PY) -m fork_build diff

fork: venv  ## review repo build/fork: "upstream X.Y.Z", our files, one commit per patch
	$(PY) -m fork_build fork

export-patches: venv  ## write build/fork's patch commits back to patches/ (after `make fork` and edits there)
	$(PY) -m fork_build export-patches

check-patches: venv  ## the series applies exactly to pristine upstream, not in reverse, with DEP-3 headers
	$(PY) -m fork_build check-patches

rebase: venv  ## UPSTREAM=X.Y.Z: report per patch whether it applies there (WRITE=1 moves the pin if all do)
	@test -n "$(UPSTREAM)" || { echo "usage: make rebase UPSTREAM=X.Y.Z [WRITE=1]" >&2; exit 2; }
	$(PY) -m fork_build rebase $(UPSTREAM) $(if $(WRITE),--write)

clean:  ## remove build outputs (keeps .venv and the upstream download cache)
	rm -rf build/editable build/diff build/fork build/check build/rebase dist
