"""Onsets from held-out checkpoints: hand-made runs whose answers are worked out in the comments.

The onset of a dependency is the first data point from which its learned
fraction stays >= the threshold, interpolated between the last checkpoint below
and the first at or above; a run that does not end above it is censored (kept,
"later than the end").
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_aggregate import CP_HEADER, LEARNED3, checkpoint_rows, config, write_run

from rnn_sweep.analysis.tables import aggregate
from rnn_sweep.analysis.stats import checkpoint_onset, median_with_censored, onset_table

X = [0, 100_000, 200_000, 300_000, 400_000]
AGG = str(Path(sys.executable).parent / "rnn-sweep-aggregate")


def test_the_briefs_run_by_hand():
    # 0.4 at 200k, 0.6 at 300k: 0.5 is halfway, 250k.
    assert checkpoint_onset(X, [0.0, 0.2, 0.4, 0.6, 0.8], 0.5) == (250_000.0, "reached", 250_000.0)


def test_a_run_that_never_crosses_is_censored_at_its_end():
    onset, status, at = checkpoint_onset(X, [0.0, 0.1, 0.2, 0.3, 0.4], 0.5, end=420_000)
    assert math.isnan(onset) and status == "censored" and at == 420_000


def test_a_run_that_crosses_then_falls_back():
    # Above at 100k and 200k, 0.4 at 300k, 0.8 at 400k: it stays only from between 300k and 400k,
    # 300k + (0.5 - 0.4) / (0.8 - 0.4) x 100k.
    assert checkpoint_onset(X, [0.0, 0.6, 0.7, 0.4, 0.8], 0.5)[:2] == (325_000.0, "reached")
    # Falls back at the very end: not learned by the end, censored.
    assert checkpoint_onset(X, [0.0, 0.6, 0.7, 0.9, 0.4], 0.5)[1] == "censored"


def test_an_onset_before_the_first_checkpoint_is_flagged():
    # 0.1 untrained, 0.9 at 100k: 0 + 0.4 / 0.8 x 100k, but only known to lie before 100k.
    assert checkpoint_onset(X[:3], [0.1, 0.9, 1.0], 0.5) == (50_000.0, "first_checkpoint", 50_000.0)


def test_learned_without_training_is_its_own_status():
    # The untrained network already carries the dependency (>= 0.5) and keeps it: onset 0.
    assert checkpoint_onset(X[:3], [0.6, 0.7, 0.9], 0.5) == (0.0, "untrained", 0.0)
    # Above untrained, lost, regained: an ordinary onset between 100k (0.3) and 200k (0.9).
    assert checkpoint_onset(X[:3], [0.6, 0.3, 0.9], 0.5)[:2] == (pytest.approx(100_000 + 0.2 / 0.6 * 100_000),
                                                                 "reached")


def test_an_undefined_fraction_has_no_onset_and_counts_as_below():
    assert checkpoint_onset(X[:3], [np.nan] * 3, 0.5)[1] == "undefined"
    # A missing value in the middle breaks "stays above": the onset is after it.
    assert checkpoint_onset(X[:3], [0.0, np.nan, 0.9], 0.5) == (200_000.0, "reached", 200_000.0)


def test_median_counts_censored_runs_as_later():
    # 2 of 3 learned: sorted 100k, 200k, later -> the middle is 200k. 2 of 4: no median ("not reached").
    assert median_with_censored([100_000, 200_000, np.nan], [False, False, True]) == 200_000
    assert math.isnan(median_with_censored([100_000, 200_000, np.nan, np.nan], [False, False, True, True]))
    # 3 of 4: the middle two are 200k and 300k -> 250k (the censored one is last).
    assert median_with_censored([300_000, np.nan, 100_000, 200_000], [False, True, False, False]) == 250_000


def test_onset_table_keeps_censored_runs():
    deps = pd.DataFrame({"cell": ["a"] * 3, "onset": [100.0, 300.0, np.nan],
                         "onset_status": ["reached", "first_checkpoint", "censored"]})
    t = onset_table(deps, ["cell"]).iloc[0]
    assert (t["runs"], t["learned"], t["censored"], t["first_checkpoint"]) == (3, 2, 1, 1)
    assert t["share"] == pytest.approx(2 / 3) and t["onset_median"] == 300.0
    # 2 of 3: the exact interval's low end solves P(X >= 2) = 3p^2 - 2p^3 = 0.025 (checked by substitution).
    low = t["share_low"]
    assert 3 * low ** 2 - 2 * low ** 3 == pytest.approx(0.025, abs=1e-9)


def test_censored_and_untrained_runs_are_kept_in_the_aggregate(tmp_path):
    write_run(tmp_path / "learns", config(5, 4, 0))
    write_run(tmp_path / "never", config(5, 4, 1), checkpoints=([0.0, 0.1, 0.2, 0.3, 0.3, 0.4], LEARNED3))
    write_run(tmp_path / "reservoir", config(5, 4, 2), checkpoints=([0.7, 0.8, 0.9, 0.9, 1.0, 1.0], LEARNED3))
    agg = aggregate(tmp_path)
    r = agg.runs.set_index("run_id")
    assert dict(r["onset_status_lag3"]) == {"learns": "reached", "never": "censored", "reservoir": "untrained"}
    d = agg.deps.set_index(["run_id", "lag"])
    assert d.loc[("never", 3), "onset_at"] == 100_000  # censored at the run's total data
    g = agg.grid.set_index("lag").loc[3]
    assert (g["seeds_learned"], g["seeds_judged"], g["onset_censored"], g["onset_untrained"]) == (2, 3, 1, 1)
    # Onsets 0 (reservoir) and 35k (learns), the censored run later: the middle of three is 35k.
    assert g["onset_median"] == 35_000


def test_the_threshold_is_an_option(tmp_path):
    write_run(tmp_path / "s" / "a", config(5, 4, 0))
    proc = subprocess.run([AGG, str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--no-figures",
                           "--onset-threshold", "0.7"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # Lag 3 at 0.7: 0.6 at 40k, 0.9 at 60k: 40k + 0.1 / 0.3 x 20k.
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert runs.loc[0, "onset_lag3"] == pytest.approx(40_000 + 20_000 / 3)
    for bad in ("0", "1.5", "nan", "-0.2"):
        proc = subprocess.run([AGG, str(tmp_path / "s"), "--out", str(tmp_path / "out2"), "--onset-threshold", bad],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "--onset-threshold" in proc.stderr and "must be in (0, 1]" in proc.stderr
        assert not (tmp_path / "out2").exists()


def test_checkpoints_by_the_writers_rule_give_the_briefs_answer(tmp_path):
    # The brief's run written as a checkpoints.csv (lag 8 held at 0): onset 250k on the data axis.
    run = write_run(tmp_path / "r", config(5, 4, 0), checkpoints=None)
    rows = checkpoint_rows([0.0, 0.2, 0.4, 0.6, 0.8], [0.0] * 5, data=X)
    (run / "checkpoints.csv").write_text(CP_HEADER + rows)
    r = aggregate(tmp_path).runs.iloc[0]
    assert r["onset_lag3"] == 250_000 and r["onset_status_lag8"] == "censored"
