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
	$(BIN)/python -m pip install --quiet -e '.[dev,keras,tensorboard,export,explain]'
	# the Keras parity tests skip without tensorflow: fail here instead if the extra did not install
	$(BIN)/python -c "import keras, tensorflow, tensorboard"
	# a separate process: torch's triton crashes a process that imported tensorflow first
	$(BIN)/python -c "import onnx, onnxscript, onnxruntime, pytorch_grad_cam"
	touch $@ $(VENV)/.installed-run

setup: $(VENV)/.installed-run
setup-test: $(VENV)/.installed-test

run: setup
	$(BIN)/ctframe run $(RECIPE)

# Tests whose numbers depend on what precision="auto" resolves to; they run again with the CPU's bf16
# answer forced each way, so both paths are checked on every machine (tests/tolerances.py).
PRECISION_TESTS := tests/core/test_precision.py tests/test_trainer_two_phase.py tests/test_trainer_quickstart.py \
	tests/test_evaluation.py tests/backbones/test_backbone_resnet_v2.py tests/backbones/test_backbone_contract.py

test: setup-test
	$(BIN)/python -m pytest -q
	CTFRAME_NATIVE_BF16=1 $(BIN)/python -m pytest -q $(PRECISION_TESTS)
	CTFRAME_NATIVE_BF16=0 $(BIN)/python -m pytest -q $(PRECISION_TESTS)

lint: setup-test
	$(BIN)/ruff check ctframe plugins tests benchmarks

clean:
	rm -rf $(VENV) runs
