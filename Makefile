# imde: set-up, tests and the demo. Every target creates/updates the local virtual environment itself, with every
# extra installed (`.[dev]` includes `.[all]`).
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

# One intra-op thread per process by default (the tests run two pytest workers on two cores). The demo gives
# its process two, the configuration its timing was measured with: its three trainings run side by side with
# DEMO_THREADS // 3 (at least one) thread each, the dissection and the experiments after them use both.
OMP_NUM_THREADS ?= 1
export OMP_NUM_THREADS
DEMO_THREADS ?= 2

demo: $(STAMP)
	OMP_NUM_THREADS=$(DEMO_THREADS) $(VENV)/bin/imde study configs/demo.yaml

demo-smoke: $(STAMP)
	$(VENV)/bin/imde study configs/demo_smoke.yaml

test: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow and not gpu" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
