# rnn-sweep: `make sweep` runs the default sweep and aggregates it; `make test` runs every test.
# Both create the virtual environment (.venv) and install the project on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: sweep test test-fast bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

sweep: $(STAMP)
	$(BIN)/rnn-sweep -m data=small num_steps=2,5,10 state_size=4,16 train.epochs=2 \
		hydra.sweep.dir=outputs/sweeps/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)
