# Two commands set everything up on a fresh machine with Python 3.11:
#   make demo   - create .venv if missing, install, run the whole pipeline on the built-in catalogue
#   make test   - create .venv if missing, install with dev extras, lint and run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# Installs are keyed on pyproject.toml, so a second run costs nothing unless the dependencies changed.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: install install-dev demo test test-fast lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# The dev install also brings Debian's chromium for the browser test (Playwright's download needs network).
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $(RUNTIME_STAMP) $@

install: $(RUNTIME_STAMP)
install-dev: $(DEV_STAMP)

demo: $(RUNTIME_STAMP)
	bash scripts/demo.sh $(ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(DEV_STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

test: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit loop: everything but the tests marked slow (real training, several processes). `make test` stays
# the whole suite (what CI runs).
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf outputs/* multirun .pytest_cache .ruff_cache
