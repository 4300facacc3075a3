# imde: set-up, tests and the demo. Every target creates/updates the local virtual environment itself.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo demo-smoke test test-slow test-all lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# One intra-op thread: the configuration the demo's timing and numbers were measured with (bit-reproducible,
# and it does not thrash when the machine is busy). Override with `make demo OMP_NUM_THREADS=2`.
OMP_NUM_THREADS ?= 1
export OMP_NUM_THREADS

demo: $(STAMP)
	$(VENV)/bin/imde study configs/demo.yaml

demo-smoke: $(STAMP)
	$(VENV)/bin/imde study configs/demo.yaml --smoke run_dir=runs/demo-smoke

test: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow and not gpu" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
