# Two entry points for a fresh machine: `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv when it is missing and (re)installs when pyproject.toml changes; the demo installs the
# package alone, the tests add the test extras, JAX and PyTorch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow

.PHONY: demo test test-all test-backends install install-test clean chromium lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# keras-hub (its models are tested) declares tensorflow-text, which pulls the full tensorflow wheel over
# tensorflow-cpu; segprune needs none of its text or preset dependencies, so it is installed alone, pinned.
KERAS_HUB := keras-hub==0.32.0

$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The tests also need JAX and PyTorch (CPU builds): `make test` runs the backend subset under both. Where
# pip's index offers only PyTorch's CUDA build (public PyPI), pass its CPU index:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
$(VENV)/.installed-test: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,jax,torch]" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet --no-deps "$(KERAS_HUB)"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/segprune demo --out runs/demo

# One worker per core (pytest-xdist), each test file on one worker so module fixtures are built once, the
# longest files first (tests/conftest.py LONGEST_FILES; --no-loadscope-reorder keeps that order): the whole
# suite under TensorFlow, then the tests marked `backends` under JAX and under PyTorch.
test: install-test chromium lint
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-backends

# The default suite plus the exhaustive instances (every keras.applications CNN): about twice as long.
test-all: install-test chromium lint
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --exhaustive $(PYTEST_ARGS)

# The layering (import-linter contracts in pyproject.toml) and the lint rules, checked before the tests.
lint: install-test
	$(BIN)/lint-imports
	$(BIN)/ruff check segprune tests benchmarks

# The report test renders report.html in Debian's headless Chromium; installed here when we may (root).
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "WARNING: chromium is not installed and could not be (needs root and apt-get): the report rendering test will be SKIPPED, and the test summary will say so"

# The tests marked `backends` (tests/conftest.py BACKEND_SUBSET: backend modules, surgery exactness on every
# architecture, importance, sparse gating and masks, export, a greedy search killed and resumed, a CLI prune
# and fine-tune on nuclei) under JAX and under PyTorch; part of `make test`.
test-backends: install-test
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder -m backends $(PYTEST_ARGS)
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder -m backends $(PYTEST_ARGS)
