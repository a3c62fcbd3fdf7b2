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

# conf/experiment/quickstart.yaml: 24 runs into outputs/sweeps/quickstart/; rerunning
# trains only what is missing. Aggregation runs at the end (a Hydra callback).
sweep: $(STAMP)
	$(BIN)/rnn-sweep experiment=quickstart

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# rnn-sweep against a literal tf.compat.v1 port of the article's code, same machine, same run
# (~5-10 min on 2 cores): markdown table on stdout and in benchmarks/results/.
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
