# Two set-up commands for a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed before the project so pip takes the local CPU build
# instead of resolving torch (and gigabytes of CUDA packages) from the registry.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test faults lint models clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools<81" wheel

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,gui]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bci demo

test: $(STAMP)
	$(BIN)/ruff check .
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q --ignore=tests/faults

# Fault injection, end to end (a killed source, NaN bursts, clock jumps, an unplugged stimulator,
# a failing decoder, a killed console or recorder, a full disk): ~4 minutes, so not in `test`.
faults: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q tests/faults

# Rebuild the demo's pretrained EEGNet (committed, 16 kB): 40 virtual subjects, ~3 minutes.
models: $(STAMP)
	$(BIN)/bci train pretrain --protocol protocols/demo.toml --decoder eegnet \
		--out models/demo-eegnet.npz

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) sessions .pytest_cache
