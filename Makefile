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

# PYTHONWARNINGS: setuptools' notes on editable installs (UserWarnings) would fill `make run`'s first screen
$(VENV)/.installed-run: pyproject.toml Makefile | $(BIN)/python
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet -e .
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

# Tests whose numbers depend on what precision="auto" resolves to. The full run checks this CPU's own
# answer (does it run bf16 natively?); these tests then run again with the other answer forced, so both
# paths are checked on every machine (tests/tolerances.py).
PRECISION_TESTS := tests/core/test_precision.py tests/plugins/two_phase/test_trainer_two_phase.py tests/plugins/two_phase/test_trainer_quickstart.py \
	tests/core/test_evaluation.py tests/plugins/resnet_v2/test_backbone_resnet_v2.py tests/core/contracts/test_backbones.py

# Test processes (pytest-xdist): most tests train with one torch thread, so two processes keep both cores
# of a 2-core machine busy (the suite took 8.4 min instead of 14.5 on the AVX2 development box).
TEST_WORKERS ?= 2

test: setup-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)
	other=$$(env -u CTFRAME_NATIVE_BF16 $(BIN)/python -c \
		"from ctframe.runtime.precision import cpu_bf16_features; print(0 if cpu_bf16_features() else 1)") && \
	echo "precision-dependent tests again with CTFRAME_NATIVE_BF16=$$other (the other answer than this CPU's)" && \
	CTFRAME_NATIVE_BF16=$$other $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PRECISION_TESTS)

lint: setup-test
	$(BIN)/ruff check ctframe plugins tests benchmarks

clean:
	rm -rf $(VENV) runs
