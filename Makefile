# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Each creates the virtual environment when it is missing (or when pyproject.toml changed).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Data directory: the environment's STSR_DATA_DIR, else ../shared/data beside a checkout, else a
# per-user cache that `python -m bench fetch` fills from upstream (sha256-verified).
STSR_DATA_DIR ?= $(if $(wildcard ../shared/data/README.md),$(abspath ../shared/data),$(HOME)/.cache/stsr-bench/data)
export STSR_DATA_DIR
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: run test test-fast env
run: $(VENV)/.installed
	$(PY) -m bench fetch
	$(PY) -m bench run --methods all

test: $(VENV)/.installed
	$(PY) -m ruff check bench methods tests benchmarks examples
	$(PY) -m ruff format --check bench methods tests benchmarks examples
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# the inner loop: no child processes, Ray, MLflow server, training runs or grids (< 60 s, 2 cores)
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not subprocess and not ray and not mlflow_server"

env: $(VENV)/.installed

# torch is pinned to the CPU build that lies on this machine's disk before the project installs,
# so pip never pulls a multi-GB CUDA build; on a GPU machine install your torch first.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $@
