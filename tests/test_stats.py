"""rnn_sweep.analysis.stats: every expected value here is worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rnn_sweep.analysis.stats import band_table, boundary_table, classify_level, clopper_pearson, onset_table, t_interval, t_quantile


def H(p: float) -> float:
    """Binary entropy in nats (independent of rnn_sweep.task.baselines)."""
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


L0, L1, L2 = H(0.625), 0.5 * H(0.875) + 0.5 * H(0.375), 0.25 * math.log(2) + 0.5 * H(0.25)
LEVELS = [L0, L1, L2]
MID01, MID12 = (L0 + L1) / 2, (L1 + L2) / 2  # 0.5904, 0.4868
@pytest.mark.parametrize("loss,expected", [
    (0.52, (1, True)),    # 0.0008 above lag 3; 25% of the gap to none is 0.036
    (0.544, (1, True)),   # 0.025 above lag 3: the margin is measured towards none (0.036), not 3+8 (0.016)
    (0.50, (1, False)),   # nearest lag 3 (0.019 away) but 25% of the gap to 3+8 is only 0.016
    (0.46, (2, True)),    # 0.0055 above 3+8
    (0.44, (2, True)),    # below the last level: 0.0145 <= 0.016
    (0.70, (0, False)),   # above none by 0.038 > 0.036
    (0.60, (0, False)),   # between none and lag 3, nearer none
])
def test_classify_level_nearest_with_margin(loss, expected):
    assert classify_level(loss, LEVELS, margin=0.25) == expected


def test_t_quantiles_match_the_printed_tables():
    # Student-t 97.5% points from any statistics table; df=1 in closed form: tan(0.475 pi).
    assert t_quantile(0.95, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-9)
    for df, q in ((2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (30, 2.042)):
        assert t_quantile(0.95, df) == pytest.approx(q, abs=5e-4)
    assert t_quantile(0.90, 2) == pytest.approx(2.920, abs=5e-4)


def test_t_interval_by_hand():
    # 1, 2, 6: mean 3, sample sd sqrt(((-2)^2 + (-1)^2 + 3^2) / 2) = sqrt(7); half width 4.303 sqrt(7/3).
    mean, low, high = t_interval(np.array([[1.0, 2.0, 6.0], [5.0, np.nan, np.nan], [np.nan] * 3]))
    half = 4.302653 * math.sqrt(7 / 3)
    assert mean[0] == 3.0 and (low[0], high[0]) == (pytest.approx(3 - half, rel=1e-6), pytest.approx(3 + half, rel=1e-6))
    assert mean[1] == 5.0 and np.isnan([low[1], high[1], mean[2], low[2], high[2]]).all()  # one value: no interval


def test_clopper_pearson_by_hand():
    # 0 of 3: the upper end solves (1 - p)^3 = 0.025; 3 of 3 mirrors it; 1 of 2: 1 - (1 - p)^2 = 0.025.
    up = 1 - 0.025 ** (1 / 3)
    assert clopper_pearson(0, 3) == (0.0, pytest.approx(up, abs=1e-9))
    assert clopper_pearson(3, 3) == (pytest.approx(1 - up, abs=1e-9), 1.0)
    low = 1 - math.sqrt(0.975)
    assert clopper_pearson(1, 2) == (pytest.approx(low, abs=1e-9), pytest.approx(1 - low, abs=1e-9))


def test_band_table_is_tidy_and_means_by_hand():
    df = pd.DataFrame({"run_id": ["a", "b", "a", "b", "c"], "n": [1, 1, 1, 1, 2], "x": [10, 10, 20, 20, 10],
                       "y": [1.0, 3.0, 2.0, np.nan, 7.0]})
    t = band_table(df, ["n"], "x", "y")
    assert list(t.columns) == ["n", "x", "mean", "low", "high", "min", "max", "units"]
    assert t[["n", "x", "mean", "min", "max"]].values.tolist() == [[1, 10, 2.0, 1.0, 3.0], [1, 20, 2.0, 2.0, 2.0],
                                                                   [2, 10, 7.0, 7.0, 7.0]]
    # 1 and 3: sd sqrt(2), half width tan(0.475 pi) sqrt(2) / sqrt(2); one value: no interval.
    assert list(t["units"]) == [2, 1, 1] and t["low"].iloc[0] == pytest.approx(2 - math.tan(0.475 * math.pi))
    assert t["low"].iloc[1:].isna().all()


def _deps(values: dict) -> pd.DataFrame:
    """{(state_size, n): [learned per seed]} -> deps rows of lag 3."""
    rows = [{"state_size": d, "num_steps": n, "seed": s, "lag": 3, "learned": v, "run_id": f"{d}-{n}-{s}"}
            for (d, n), vals in values.items() for s, v in enumerate(vals)]
    return pd.DataFrame(rows)


def test_boundary_by_hand():
    deps = _deps({
        # d=4: seed means 0.1, 0.5, 0.45, 0.95, 0.95 at n = 2, 4, 6, 8, 10. Mean >= 0.5 at n=4 but
        # drops at n=6: it stays from n=8. Seed 0 reaches 0.5 at n=4 and stays; seed 1 from n=8.
        (4, 2): [0.1, 0.1], (4, 4): [0.6, 0.4], (4, 6): [0.5, 0.4], (4, 8): [0.9, 1.0], (4, 10): [0.95, 0.95],
        # d=16: already >= 0.9 at the smallest n (an "at or below n=2" boundary).
        (16, 2): [0.92, 0.97], (16, 4): [1.0, 1.0],
    })
    b = boundary_table(deps, []).set_index(["state_size", "threshold"])
    assert b.loc[(4, 0.5), "n_mean"] == 8.0 and not b.loc[(4, 0.5), "at_smallest"]
    assert (b.loc[(4, 0.5), "n_seed_min"], b.loc[(4, 0.5), "n_seed_max"]) == (4.0, 8.0)
    assert b.loc[(4, 0.5), "seeds_reached"] == 2 and b.loc[(4, 0.5), "n_seed_median"] == 6.0
    # 0.9: seed 0 has 0.9 at n=8 (>= 0.9 counts), seed 1 1.0: both from 8.
    assert b.loc[(4, 0.9), "n_mean"] == 8.0 and b.loc[(4, 0.9), "n_seed_max"] == 8.0
    assert b.loc[(16, 0.9), "n_mean"] == 2.0 and b.loc[(16, 0.9), "n_swept_min"] == 2.0
    assert b.loc[(16, 0.9), "at_smallest"]
    never = boundary_table(_deps({(2, 2): [0.1], (2, 4): [0.95], (2, 6): [0.2]}), [])
    assert never["n_mean"].isna().all() and list(never["seeds_reached"]) == [0, 0]


def test_boundary_bars_count_every_seed():
    # Three seeds; seed 2 never stays >= 0.5: it is in the range (inf, beyond the swept n) and the median.
    deps = _deps({(4, 2): [0.1, 0.1, 0.1], (4, 4): [0.9, 0.1, 0.1], (4, 6): [0.9, 0.9, 0.2]})
    b = boundary_table(deps, [], thresholds=(0.5,)).iloc[0]
    assert (b["seeds"], b["seeds_reached"]) == (3, 2)
    assert (b["n_seed_min"], b["n_seed_median"], b["n_seed_max"]) == (4.0, 6.0, math.inf)
    assert b["n_mean"] == 6.0  # the mean is 1.1 / 3 = 0.37 at n=4 and 2.0 / 3 = 0.67 at n=6
