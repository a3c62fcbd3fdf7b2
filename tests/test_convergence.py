"""The boundary at convergence: the experiment trains each run to the stated criterion and budget,
and the figures say so (the budget of runs that stopped on their own, with the data they used)."""

from __future__ import annotations

import json

from conftest import compose
from test_aggregate import LENGTH, config, write_run

from rnn_sweep.analysis.tables import aggregate


def test_the_experiment_trains_to_the_stated_criterion_and_budget():
    from rnn_sweep.launch.cli import to_run_config

    cfg = to_run_config(compose(["experiment=boundary_convergence"]))
    t = cfg.train
    assert (t.stop_patience, t.stop_tolerance, t.checkpoints, t.checkpoint_spacing) == (10, 0.0, 10, "linear")
    assert t.epochs == 10 and t.max_data_steps == 10 * cfg.data.length == 10_000_000
    assert cfg.data.length == 1_000_000 and [d.lag for d in cfg.data.dependencies] == [3, 8]
    params = compose(["experiment=boundary_convergence"], return_hydra=True).hydra.sweeper.params
    assert params["num_steps"] == "1,2,3,4,5,6,7,8,9,10,12" and params["state_size"] == "4,8,16"
    assert params["seed"] == "0,1,2,3,4"


def _criterion_sweep(root, used: list[int], cap: int | None = None):
    """Runs of 10 epochs with train.stop_patience 10 that stopped after ``used`` time steps each."""
    for seed, data in enumerate(used):
        cfg = config(4, 4, seed, epochs=10)
        cfg["train"] |= {"stop_patience": 10, "stop_tolerance": 0.0, "max_data_steps": cap}
        run = write_run(root / f"s{seed}", cfg)
        summary = json.loads((run / "summary.json").read_text())
        summary |= {"data_steps": data, "stop_reason": "converged"}
        (run / "summary.json").write_text(json.dumps(summary))
    return aggregate(root)


def test_the_budget_of_runs_trained_to_a_criterion_names_it_and_the_data_they_used(tmp_path):
    agg = _criterion_sweep(tmp_path, [123_456, 345_678, 250_000])
    assert LENGTH == 100_000
    # Two significant digits: 123,456 -> 120k, 345,678 -> 350k.
    assert agg.budget == ("up to 10 epochs × 100k time steps of training data, each run until its held-out loss "
                          "stopped improving (used 120k-350k)")


def test_a_data_cap_below_the_epochs_is_stated(tmp_path):
    agg = _criterion_sweep(tmp_path, [150_000, 160_000], cap=250_000)
    assert agg.budget.startswith("up to 10 epochs × 100k time steps of training data (at most 250k time steps), ")


def test_a_fixed_budget_reads_as_before(tmp_path):
    write_run(tmp_path / "a", config(4, 4, 0, epochs=2))
    assert aggregate(tmp_path).budget == "2 epochs × 100k time steps of training data"
