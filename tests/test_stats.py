"""rnn_sweep.stats: every expected value here is worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rnn_sweep.stats import (
    band_table, bootstrap_ci, boundary_table, causal_smooth, classify_level, data_steps, onset_table, onsets,
)


def H(p: float) -> float:
    """Binary entropy in nats (independent of rnn_sweep.baselines)."""
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


L0, L1, L2 = H(0.625), 0.5 * H(0.875) + 0.5 * H(0.375), 0.25 * math.log(2) + 0.5 * H(0.25)
LEVELS = [L0, L1, L2]
MID01, MID12 = (L0 + L1) / 2, (L1 + L2) / 2  # 0.5904, 0.4868
# Blocks of 10 updates; a one-block dip at step 20; lag 3 from step 60, lags 3+8 from step 100.
CURVE = np.array([0.69, 0.40, 0.69, 0.69, 0.69, 0.52, 0.52, 0.52, 0.52, 0.455, 0.455, 0.455, 0.455, 0.455])
STEPS = np.arange(1, len(CURVE) + 1) * 10.0


def crossing(x0, y0, x1, y1, level):
    """Where the straight line (x0, y0)-(x1, y1) meets y = level (a second, scalar implementation)."""
    return x0 + (y0 - level) / (y0 - y1) * (x1 - x0)


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


def test_causal_smooth_never_looks_ahead():
    # Trailing medians of 3: [.69], [.69 .40] -> .545, [.69 .40 .69] -> .69, ...
    sm = causal_smooth(CURVE, 3)
    assert list(sm[:7]) == pytest.approx([0.69, 0.545, 0.69, 0.69, 0.69, 0.69, 0.52])
    # Changing a later block never changes an earlier smoothed value.
    later = CURVE.copy()
    later[8:] = 0.1
    assert list(causal_smooth(later, 3)[:8]) == list(sm[:8])
    # A diverged (NaN) block counts as +inf, never as low.
    assert causal_smooth(np.array([0.5, np.nan, np.nan]), 3)[-1] == math.inf


def test_onset_interpolates_the_last_crossing_of_the_causal_median():
    # Smoothed (window 3): ... i5 .69 (step 60), i6 .52 (step 70) ... i9 .52 (100), i10 .455 (110).
    got = onsets(STEPS, CURVE, LEVELS, window=3)
    assert got == pytest.approx([crossing(60, 0.69, 70, 0.52, MID01), crossing(100, 0.52, 110, 0.455, MID12)])
    assert 65 < got[0] < 66 and 105 < got[1] < 106  # finer than the 10-step blocks
    # Raw blocks (window 1): the dip at step 20 crosses but does not stay: the onset is the
    # crossing between step 50 (.69) and 60 (.52).
    raw = onsets(STEPS, CURVE, LEVELS, window=1)
    assert raw == pytest.approx([crossing(50, 0.69, 60, 0.52, MID01), crossing(90, 0.52, 100, 0.455, MID12)])


def test_onset_needs_the_loss_to_stay_below():
    relapse = np.array([0.69, 0.50, 0.50, 0.50, 0.70, 0.70, 0.70])  # learned, then back above "none"
    assert all(math.isnan(v) for v in onsets(STEPS[:7], relapse, LEVELS, window=1))
    diverged = np.array([0.69, 0.50, 0.45, 0.45, np.nan])
    assert all(math.isnan(v) for v in onsets(STEPS[:5], diverged, LEVELS, window=1))
    never = np.full(6, 0.6)
    assert all(math.isnan(v) for v in onsets(STEPS[:6], never, LEVELS, window=3))
    # Below the lag-3 midpoint from the first block: only "at or before it" is known.
    early = np.array([0.50, 0.51, 0.50])
    on = onsets(STEPS[:3], early, LEVELS, window=3)
    assert on[0] == 10.0 and math.isnan(on[1])


def test_data_steps_by_hand():
    # TF style n=5, batch 200, 100,000 steps per epoch: 500 columns = 100 windows = 100 updates
    # of 5 x 200 = 1000 time steps. Two epochs logged every 30 updates.
    epoch = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    step = np.array([30, 60, 90, 100, 130, 160, 190, 200])
    assert list(data_steps(epoch, step, 200, 100_000, 100, 5)) == [
        30_000, 60_000, 90_000, 100_000, 130_000, 160_000, 190_000, 200_000]
    # n=3: 166 windows (498 of 500 columns), 600 steps each; the 2 left-over columns of an
    # epoch count at its end, so epoch 1 starts at 100,000 (not 99,600).
    assert list(data_steps(np.array([0, 1]), np.array([166, 196]), 200, 100_000, 166, 3)) == [99_600, 118_000]
    # True BPTT with update_every=2 at n=5: 250 updates of 2 x 200 = 400 steps per epoch.
    assert list(data_steps(np.array([0, 1]), np.array([250, 260]), 200, 100_000, 250, 2)) == [100_000, 104_000]


def test_bootstrap_ci_by_hand():
    # Two values 1 and 3: resampled means are 1, 2, 3 with probability 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% percentiles are 1 and 3. One value: no spread. None: NaN.
    mean, low, high = bootstrap_ci(np.array([[1.0, 3.0, np.nan], [5.0, np.nan, np.nan], [np.nan] * 3]))
    assert list(mean[:2]) == [2.0, 5.0] and list(low[:2]) == [1.0, 5.0] and list(high[:2]) == [3.0, 5.0]
    assert np.isnan([mean[2], low[2], high[2]]).all()
    x = np.random.default_rng(1).normal(size=(1, 400))
    _, low, high = bootstrap_ci(x, n_boot=4000)
    assert (high[0] - low[0]) / 2 == pytest.approx(1.96 * x.std(ddof=1) / 20, rel=0.1)


def test_band_table_is_tidy_and_means_by_hand():
    df = pd.DataFrame({"run_id": ["a", "b", "a", "b", "c"], "n": [1, 1, 1, 1, 2], "x": [10, 10, 20, 20, 10],
                       "y": [1.0, 3.0, 2.0, np.nan, 7.0]})
    t = band_table(df, ["n"], "x", "y")
    assert list(t.columns) == ["n", "x", "mean", "low", "high", "units"]
    assert t[["n", "x", "mean"]].values.tolist() == [[1, 10, 2.0], [1, 20, 2.0], [2, 10, 7.0]]
    assert list(t["units"]) == [2, 1, 1] and list(t["low"]) == [1.0, 2.0, 7.0]


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
    assert b.loc[(4, 0.5), "n_mean"] == 8.0
    assert (b.loc[(4, 0.5), "n_seed_min"], b.loc[(4, 0.5), "n_seed_max"]) == (4.0, 8.0)
    assert b.loc[(4, 0.5), "seeds_crossed"] == 2 and b.loc[(4, 0.5), "n_seed_median"] == 6.0
    # 0.9: seed 0 has 0.9 at n=8 (>= 0.9 counts), seed 1 1.0: both from 8.
    assert b.loc[(4, 0.9), "n_mean"] == 8.0 and b.loc[(4, 0.9), "n_seed_max"] == 8.0
    assert b.loc[(16, 0.9), "n_mean"] == 2.0 and b.loc[(16, 0.9), "n_swept_min"] == 2.0
    never = boundary_table(_deps({(2, 2): [0.1], (2, 4): [0.95], (2, 6): [0.2]}), [])
    assert never["n_mean"].isna().all() and list(never["seeds_crossed"]) == [0, 0]


def test_onset_table_counts_first_block_bounds():
    deps = pd.DataFrame({"run_id": ["a", "b", "c"], "state_size": [4, 4, 4], "num_steps": [2, 2, 2],
                         "onset": [100.0, 300.0, np.nan], "onset_first_block": [True, False, False]})
    t = onset_table(deps, ["state_size", "num_steps"])
    assert t[["mean", "runs", "first_block"]].values.tolist() == [[200.0, 3, 1]]
