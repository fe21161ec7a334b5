# odistill — the two commands of the quick start are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all bench sim-test gpu-check clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: on a machine without a GPU this is the CPU build; with one, pip's CUDA build
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[train,test]"
	touch $(STAMP)

install: $(STAMP)

# The main job: online distillation over the simulator tour (clear -> fog -> night -> rain -> snow -> clear)
demo: $(STAMP)
	$(VENV)/bin/odistill run --out runs/demo

# The whole test suite (Ray tests included, marked `ray`); under 15 minutes on 2 cores
test: $(STAMP)
	$(PY) -m pytest -q

# The whole scenario suite (scenarios/*.toml): pass/fail per scenario, JUnit XML for a CI server
sim-test: $(STAMP)
	$(VENV)/bin/odistill sim-test scenarios/ --junit runs/sim-test/junit.xml --out runs/sim-test

bench: $(STAMP)
	$(PY) bench/sim_render.py
	$(PY) bench/evaluator.py
	$(PY) bench/runners.py

gpu-check: $(STAMP)
	bash bench/gpu_check.sh

clean:
	rm -rf $(VENV) runs .pytest_cache .import_linter_cache
