# Two entry points for a fresh machine: `make run` and `make test`. Both are idempotent: the
# installation is redone only when pyproject.toml or this Makefile changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RECIPE ?= recipes/quickstart.toml

.PHONY: setup setup-test run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,keras,tensorboard]'
	# the Keras parity tests skip without tensorflow: fail here instead if the extra did not install
	$(BIN)/python -c "import keras, tensorflow, tensorboard"
	touch $@ $(VENV)/.installed-run

setup: $(VENV)/.installed-run
setup-test: $(VENV)/.installed-test

run: setup
	$(BIN)/ctframe run $(RECIPE)

test: setup-test
	$(BIN)/python -m pytest -q

lint: setup-test
	$(BIN)/ruff check ctframe plugins tests benchmarks

clean:
	rm -rf $(VENV) runs
