# Quick start:  make demo   (set-up + train DMD on the embedded synthetic data set)
#               make test   (set-up + the test suite)
# Set-up creates .venv. It installs torch only if .venv has none: TORCH defaults to the CPU build
# torch==2.13.0; a torch you installed into .venv yourself (CUDA, ROCm) is kept.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup demo test lint bench clean

# Core set-up (what `demo` needs): torch, numpy, pyyaml, tqdm.
$(VENV)/.core: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e . -c constraints.txt
	touch $@

# Everything the tests cover: every extra (video: PyAV, librosa, MediaPipe, OpenCV; speech; openSMILE;
# the offline model weights), plus pytest, ruff and the test-media libraries.
$(VENV)/.installed: $(VENV)/.core
	$(BIN)/python -m pip install -e ".[dev]" -c constraints.txt
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.core
	$(BIN)/emodistill train --config dmd_synth_demo --quiet
	@echo "dmd_synth_demo is a 12-epoch schedule for a first look; to compare DMD with other models use its recipe tuned on this data, --config dmd_synth_tuned (README: Comparing models)"

# scripts/test-postgres.sh: Debian's PostgreSQL server binaries for the shared-study tests of `emodistill tune`
# (installed when root with apt-get; otherwise those tests are skipped, or fail with EMODISTILL_REQUIRE_POSTGRES=1)
# scripts/test-browser.sh: Debian's chromium + chromium-driver for the page tests of `emodistill serve` (same rule)
test: setup
	scripts/test-postgres.sh
	scripts/test-browser.sh
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/inference_speed.py
	$(BIN)/python benchmarks/video_speed.py
	$(BIN)/python benchmarks/serve_load.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
