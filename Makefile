# Two commands for a new user (see README.md):
#   make demo   set everything up, then run the whole pipeline on the embedded default
#   make test   set everything up, then run the test suite (what CI runs)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo

.PHONY: setup demo test test-fast lint bench clean

$(STAMP): pyproject.toml requirements.lock scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/pytest -m "not gpu" --durations=15

test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not gpu and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
