# rnn-sweep: `make sweep` runs the default sweep and aggregates it; `make test` runs every test.
# Both create the virtual environment (.venv) and install the project on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: sweep test test-fast bench clean-venv figures

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# conf/experiment/quickstart.yaml (its header gives the run count and time) into
# outputs/sweeps/quickstart/; rerunning trains only what is missing. Aggregation runs at
# the end (a Hydra callback) into outputs/sweeps/quickstart/aggregate/.
sweep: $(STAMP)
	$(BIN)/rnn-sweep experiment=quickstart

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# rnn-sweep against a literal tf.compat.v1 port of the article's code, same machine, same run:
# markdown table on stdout and in benchmarks/results/ (docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)

# The docs figures (docs/figures/*.png, see docs/figures.md), regenerated from the sweeps they
# show: each experiment's sweep runs into $(FIGURE_SWEEPS)/<experiment>/ (a rerun trains only
# what is missing), is aggregated there, and its PNGs are copied to docs/figures/<experiment>-<figure>.png.
# The experiments' headers give their run counts and times.
FIGURE_SWEEPS ?= outputs/sweeps
FIGURE_EXPERIMENTS ?= quickstart r2rt_grid truncation_styles backends reservoir_control boundary_convergence
FIGURE_DPI ?= 110
figures: $(STAMP)
	mkdir -p docs/figures
	set -e; for e in $(FIGURE_EXPERIMENTS); do \
	  $(BIN)/rnn-sweep experiment=$$e hydra.sweep.dir=$(FIGURE_SWEEPS)/$$e hydra.callbacks.aggregate.enabled=false; \
	  $(BIN)/rnn-sweep-aggregate $(FIGURE_SWEEPS)/$$e --format png --dpi $(FIGURE_DPI); \
	  for f in grid boundary curves onset truncation reservoir styles; do \
	    if [ -f $(FIGURE_SWEEPS)/$$e/aggregate/$$f.png ]; then cp $(FIGURE_SWEEPS)/$$e/aggregate/$$f.png docs/figures/$$e-$$f.png; fi; \
	  done; \
	done
	ls -l docs/figures
