# Two set-up commands for a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed before the project so pip takes the local CPU build
# instead of resolving torch (and gigabytes of CUDA packages) from the registry.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

TF_VENV := .venv-timeflux
TF_STAMP := $(TF_VENV)/.installed

.PHONY: demo test faults nightly lint models clean peers

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools<81" wheel

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,gui]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bci demo

# The whole suite, the fault injection included (~20 minutes on 2 cores; CI runs this).
test: $(STAMP)
	$(BIN)/ruff check .
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

# The peers of `bci bench latency --peers`: MNE-LSL in the project's venv (the `peers` extra), and
# Timeflux in its own venv, because Timeflux 0.17 imports `pylsl.resolve_stream`, which pylsl 1.17
# removed (it runs on pylsl 1.16.2 with the main venv's liblsl, see bci/bench/peers/timeflux_peer.py).
# torch first here too, for the CPU build.
peers: $(STAMP) $(TF_STAMP)
	$(BIN)/pip install --quiet -e ".[dev,gui,peers]"

$(TF_STAMP):
	$(PY) -m venv $(TF_VENV)
	$(TF_VENV)/bin/pip install --quiet --upgrade pip "setuptools<81" wheel
	$(TF_VENV)/bin/pip install --quiet torch==2.13.0
	$(TF_VENV)/bin/pip install --quiet "timeflux==0.17.*" "timeflux-dsp==0.3.*" pylsl==1.16.2
	touch $(TF_STAMP)

# Fault injection alone, end to end (a killed source, NaN bursts, clock jumps, an unplugged
# stimulator, a failing decoder, a killed console or recorder, a disk filling up, SIGTERM, SIGHUP
# and SIGKILL of a session): ~7 minutes. Also part of `test`.
faults: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q tests/faults

# Nightly and before a release: the whole suite with the full 100,000-sequence governor
# property test (~25 minutes).
nightly: $(STAMP)
	$(BIN)/ruff check .
	BCI_FULL_TESTS=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

# Rebuild the demo's pretrained EEGNet (committed, 16 kB): 40 virtual subjects, ~3 minutes.
models: $(STAMP)
	$(BIN)/bci train pretrain --protocol protocols/demo.toml --decoder eegnet \
		--out models/demo-eegnet.npz

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(TF_VENV) sessions .pytest_cache
