"""Statistics of a sweep as pure functions on arrays and tidy tables (NumPy/pandas only).

Kept apart from drawing (rliable's split of ``metrics`` and ``plot_utils``):
:mod:`rnn_sweep.analysis.tables` measures runs with these functions and
:mod:`rnn_sweep.analysis.plots` only draws the tables they return.

Units: ``data_steps`` counts time steps of the training sequence consumed,
over the whole batch (one epoch = ``data.length``), so runs with different
window lengths n, batch sizes or truncation styles share one x axis.

Intervals: a mean over seeds gets a Student-t interval (:func:`t_interval`:
exact for normally spread seeds; with seeds split between two loss levels and
only 3 of them it covers less, which the figures say), a share of seeds that
learned gets the Clopper-Pearson interval (:func:`clopper_pearson`: at least
its level for every true share). Figures draw ranges over seeds, named as such.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

DEFAULT_MARGIN = 0.25  # a loss within 25% of the gap to the next level "clearly" sits on a level
DEFAULT_ONSET_THRESHOLD = 0.5  # learned fraction from which a dependency counts as learned (half its effect)
THRESHOLDS = (0.5, 0.9)  # learned fractions whose crossing in n defines the learning boundary
CI_LEVEL = 0.95
# Onset statuses of one (run, dependency): where the learned fraction first stays >= the threshold.
REACHED, FIRST, UNTRAINED, CENSORED, UNDEFINED = "reached", "first_checkpoint", "untrained", "censored", "undefined"
LEARNED_STATUSES = (REACHED, FIRST, UNTRAINED)


def classify_level(loss: float, level_losses: list[float], margin: float = DEFAULT_MARGIN) -> tuple[int, bool]:
    """Nearest analytic level to ``loss`` and whether the loss clearly sits on it.

    Args:
        loss: a loss in nats.
        level_losses: the levels' losses, from "none" (highest) down.
        margin: fraction of the gap to the neighbouring level (on the loss's side)
            within which the loss counts as clearly on the level.

    Returns:
        (index k of the nearest level = dependencies known, clear).
    """
    lv = np.asarray(level_losses, dtype=float)
    k = int(np.argmin(np.abs(lv - loss)))
    if len(lv) == 1:
        return k, True
    above = loss >= lv[k]  # towards "none"
    nb = k - 1 if (above and k > 0) or k == len(lv) - 1 else k + 1
    return k, bool(abs(loss - lv[k]) <= margin * abs(lv[k] - lv[nb]))


def checkpoint_onset(x: np.ndarray, learned: np.ndarray, threshold: float = DEFAULT_ONSET_THRESHOLD,
                     end: float | None = None) -> tuple[float, str, float]:
    """When one dependency got learned, from the run's held-out checkpoints.

    The onset is the first data-seen point from which the learned fraction stays
    >= ``threshold`` to the last checkpoint, linearly interpolated between the last
    checkpoint below and the first at or above it.

    Args:
        x: [C] increasing data steps of the checkpoints (the first is the untrained model, 0).
        learned: [C] the probe's learned fraction at each (NaN: undefined, counts as below).
        threshold: the learned fraction that counts as learned.
        end: the run's total data (where a censored onset is placed); default x[-1].

    Returns:
        (onset, status, at): ``status`` is ``reached``; ``first_checkpoint`` (crossed
        between the first two checkpoints: the onset is only known to lie there);
        ``untrained`` (the untrained model is already at or above the threshold and
        stays: learned without training, onset 0); ``censored`` (not at or above it to
        the end: onset NaN, ``at`` = the run's end, "later than the end"); or
        ``undefined`` (no value at all). ``at`` is the onset, or where it was censored.
    """
    x, f = np.asarray(x, dtype=float), np.asarray(learned, dtype=float)
    end = float(x[-1]) if end is None and len(x) else end
    if not len(f) or np.isnan(f).all():
        return math.nan, UNDEFINED, math.nan
    below = np.flatnonzero(~(f >= threshold))  # NaN is below
    if below.size and below[-1] == len(f) - 1:
        return math.nan, CENSORED, float(end)
    if not below.size:
        status = UNTRAINED if x[0] == 0 else FIRST  # no untrained row: crossed at or before the first
        return float(x[0]), status, float(x[0])
    j = below[-1]  # the last checkpoint below; j + 1 is the first of those that stay at or above
    frac = (threshold - f[j]) / (f[j + 1] - f[j]) if math.isfinite(f[j]) else 1.0
    onset = float(x[j] + frac * (x[j + 1] - x[j]))
    return onset, FIRST if j == 0 else REACHED, onset


def median_with_censored(onsets: np.ndarray, censored: np.ndarray) -> float:
    """Median onset over every run, a censored run counting as later than any onset.

    Defined only when more than half the runs learned (then the middle value(s)
    are onsets); NaN ("not reached") otherwise.
    """
    on = np.asarray(onsets, dtype=float)
    cen = np.asarray(censored, dtype=bool)
    if not len(on) or (~cen).sum() * 2 <= len(on):
        return math.nan
    return float(np.median(np.where(cen, np.inf, on)))


@functools.lru_cache(maxsize=None)  # a sweep's tables ask for the same few (level, df) thousands of times
def t_quantile(level: float, df: int) -> float:
    """Two-sided Student-t critical value: P(|T_df| <= q) = level (exact for integer df,
    Abramowitz & Stegun 26.7.3-4, solved by bisection)."""
    lo, hi = 0.0, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student-t with integer ``df`` degrees of freedom."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:  # odd: (2/pi)(theta + sin cos (1 + 2/3 cos^2 + ...))
        term, total = 1.0, 0.0 if df == 1 else 1.0
        for k in range(1, (df - 1) // 2):
            term *= (2 * k) / (2 * k + 1) * c * c
            total += term
        return 2 / math.pi * (theta + s * c * total)
    term, total = 1.0, 1.0  # even: sin (1 + 1/2 cos^2 + 1.3/2.4 cos^4 + ...)
    for k in range(1, df // 2):
        term *= (2 * k - 1) / (2 * k) * c * c
        total += term
    return s * total


def t_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and Student-t confidence interval of each row, vectorised.

    Args:
        values: [G, U] array, one row per group, one column per unit (run); NaN
            marks a unit absent from that group.
        level: confidence level.

    Returns:
        (mean, low, high), each [G]; low/high NaN for rows with fewer than 2 values.
    """
    v = np.asarray(values, dtype=float)
    n = np.sum(~np.isnan(v), axis=1)
    mean = np.full(len(v), np.nan)
    half = np.full(len(v), np.nan)
    has = n > 0
    mean[has] = np.nansum(v[has], axis=1) / n[has]
    two = n >= 2
    sd = np.sqrt(np.nansum((v[two] - mean[two, None]) ** 2, axis=1) / (n[two] - 1))
    q = np.array([t_quantile(level, int(m) - 1) for m in n[two]])
    half[two] = q * sd / np.sqrt(n[two])
    return mean, mean - half, mean + half


def clopper_pearson(k: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial share k/n: covers at least ``level``."""
    if n <= 0:
        return math.nan, math.nan
    tail = (1 - level) / 2

    def cdf(p: float, upto: int) -> float:  # P(X <= upto | p)
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(upto + 1))

    def solve(f) -> float:  # f decreasing in p from >= 0 to <= 0: its root by bisection
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if k == 0 else solve(lambda p: tail - (1 - cdf(p, k - 1)))
    high = 1.0 if k == n else solve(lambda p: cdf(p, k) - tail)
    return low, high


def band_table(df: pd.DataFrame, keys: list[str], x: str, y: str, unit: str = "run_id",
               level: float = CI_LEVEL) -> pd.DataFrame:
    """Mean of ``y`` over units at each (keys, x), with its Student-t interval and the range.

    Returns columns ``*keys, x, mean, low, high`` (t interval; empty with one unit),
    ``min``, ``max`` (range over units), ``units`` (units with a value), sorted.
    """
    cols = [*keys, x, "mean", "low", "high", "min", "max", "units"]
    data = df.dropna(subset=[y])
    if data.empty:
        return pd.DataFrame(columns=cols)
    wide = data.pivot_table(index=[*keys, x], columns=unit, values=y, aggfunc="mean", dropna=True)
    values = wide.to_numpy(dtype=float)
    mean, low, high = t_interval(values, level=level)
    out = wide.index.to_frame(index=False)
    out["mean"], out["low"], out["high"] = mean, low, high
    out["min"], out["max"] = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
    out["units"] = wide.notna().sum(axis=1).to_numpy()
    return out[cols].sort_values([*keys, x], ignore_index=True)


def _first_staying(ns: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """Smallest n from which ``values`` stay >= threshold for every larger n (inf: never)."""
    ok = values >= threshold  # NaN compares False: an unmeasured n breaks the run of successes
    if not ok.size or not ok[-1]:
        return math.inf
    bad = np.flatnonzero(~ok)
    return float(ns[bad[-1] + 1] if bad.size else ns[0])


def boundary_table(deps: pd.DataFrame, groups: list[str], thresholds=THRESHOLDS) -> pd.DataFrame:
    """Where each dependency gets learned: the smallest window length n that suffices.

    Args:
        deps: one row per run and dependency with columns ``*groups``,
            ``state_size``, ``num_steps``, ``seed``, ``lag``, ``learned``.
        groups: other configuration columns to keep apart (style, backend, ...).
        thresholds: learned fractions to cross.

    Returns:
        One row per (groups, state_size, lag, threshold): ``n_mean`` (smallest swept n
        from which the mean over seeds stays >= threshold at every larger swept n;
        empty if it never does), ``at_smallest`` (``n_mean`` is the smallest n swept:
        the boundary is at or below it, not inside the range), ``seeds``,
        ``seeds_reached``, ``n_seed_min``, ``n_seed_median``, ``n_seed_max`` (the same
        per seed over EVERY seed; a seed that never stays above counts as ``inf``,
        beyond the swept n), ``n_swept_min``, ``n_swept_max``.
    """
    keys = [*groups, "state_size", "lag"]
    cols = [*keys, "threshold", "n_mean", "at_smallest", "seeds", "seeds_reached", "n_seed_min", "n_seed_median",
            "n_seed_max", "n_swept_min", "n_swept_max"]
    data = deps.dropna(subset=["learned"])
    rows = []
    for key, g in data.groupby(keys, sort=True, dropna=False):
        wide = g.pivot_table(index="num_steps", columns="seed", values="learned", aggfunc="mean").sort_index()
        ns = wide.index.to_numpy(dtype=float)
        mean = wide.mean(axis=1).to_numpy()
        for t in thresholds:
            per_seed = np.array([_first_staying(ns, wide[s].to_numpy(), t) for s in wide.columns])
            n_mean = _first_staying(ns, mean, t)
            rows.append({**dict(zip(keys, key)), "threshold": t, "n_mean": n_mean if math.isfinite(n_mean) else math.nan,
                         "at_smallest": bool(n_mean == ns[0]), "seeds": wide.shape[1],
                         "seeds_reached": int(np.isfinite(per_seed).sum()), "n_seed_min": per_seed.min(),
                         "n_seed_median": float(np.median(per_seed)), "n_seed_max": per_seed.max(),
                         "n_swept_min": ns[0], "n_swept_max": ns[-1]})
    return pd.DataFrame(rows, columns=cols)


def onset_table(deps: pd.DataFrame, keys: list[str], level: float = CI_LEVEL) -> pd.DataFrame:
    """Onsets summarised per (keys) over every run, censored ones included.

    Args:
        deps: rows with ``*keys``, ``onset``, ``onset_status`` (see :func:`checkpoint_onset`).
        keys: grouping columns.

    Returns:
        Columns ``*keys``, ``runs`` (with a defined status), ``learned`` (runs whose
        onset was reached), ``share``, ``share_low``, ``share_high`` (learned / runs and
        its Clopper-Pearson interval), ``onset_median`` (censored runs counted as later
        than the end; empty unless more than half learned), ``onset_min``,
        ``onset_max`` (over the runs that learned), ``first_checkpoint``,
        ``untrained``, ``censored`` (runs with that status).
    """
    cols = [*keys, "runs", "learned", "share", "share_low", "share_high", "onset_median", "onset_min",
            "onset_max", "first_checkpoint", "untrained", "censored"]
    data = deps[deps["onset_status"].isin([*LEARNED_STATUSES, CENSORED])]
    rows = []
    for key, g in data.groupby(keys, sort=True, dropna=False):
        cen = (g["onset_status"] == CENSORED).to_numpy()
        on = g["onset"].to_numpy(dtype=float)
        k, n = int((~cen).sum()), len(g)
        low, high = clopper_pearson(k, n, level)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "runs": n, "learned": k,
                     "share": k / n, "share_low": low, "share_high": high,
                     "onset_median": median_with_censored(on, cen),
                     "onset_min": on[~cen].min() if k else math.nan, "onset_max": on[~cen].max() if k else math.nan,
                     "first_checkpoint": int((g["onset_status"] == FIRST).sum()),
                     "untrained": int((g["onset_status"] == UNTRAINED).sum()), "censored": int(cen.sum())})
    return pd.DataFrame(rows, columns=cols)
