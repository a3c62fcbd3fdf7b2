"""Statistics of a sweep as pure functions on arrays and tidy tables (NumPy/pandas only).

Kept apart from drawing (rliable's split of ``metrics`` and ``plot_utils``):
:mod:`rnn_sweep.aggregate` measures runs with these functions and
:mod:`rnn_sweep.plots` only draws the tables they return.

Units: ``data_steps`` counts time steps of the training sequence consumed,
over the whole batch (one epoch = ``data.length``), so runs with different
window lengths n, batch sizes or truncation styles share one x axis.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DEFAULT_MARGIN = 0.25  # a loss within 25% of the gap to the next level "clearly" sits on a level
DEFAULT_SMOOTH = 3  # blocks in the trailing (causal) rolling median used for the learn-onset
THRESHOLDS = (0.5, 0.9)  # learned fractions whose crossing in n defines the learning boundary
CI_LEVEL = 0.95


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


def causal_smooth(loss: np.ndarray, window: int = DEFAULT_SMOOTH) -> np.ndarray:
    """Trailing rolling median over ``window`` blocks: block i sees blocks i-window+1..i only.

    Causal on purpose: a centred window looks ahead, so a block whose own loss is
    still high could read as learned. A non-finite block (diverged) counts as
    +inf, so it can never read as "below a level".
    """
    x = np.asarray(loss, dtype=float)
    x = np.where(np.isfinite(x), x, np.inf)
    if not len(x):
        return x
    # NumPy, not pandas' rolling median: pandas treats inf as missing, which would hide a divergence.
    padded = np.concatenate([np.full(window - 1, np.nan), x])
    return np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def onsets(x: np.ndarray, loss: np.ndarray, level_losses: list[float],
           window: int = DEFAULT_SMOOTH) -> list[float]:
    """Learn-onset of each level k >= 1 on the axis ``x`` (e.g. data steps).

    The onset is where the causally smoothed loss (:func:`causal_smooth`) crosses
    the midpoint between levels k-1 and k for the last time and stays at or below
    it to the end of the run. The crossing is placed between the last block above
    the midpoint and the next one by linear interpolation of the smoothed loss in
    ``x``, so its resolution is finer than a block. A run below the midpoint from
    its first block gets that block's ``x`` (the crossing happened at or before it);
    a run that ends above it (or diverged) gets NaN.

    Args:
        x: [T] increasing positions of the blocks' ends.
        loss: [T] block mean losses.
        level_losses: analytic levels, "none" (highest) first.
        window: smoothing window in blocks (1 = raw block means).

    Returns:
        One onset per level k >= 1 (len(level_losses) - 1 values).
    """
    x = np.asarray(x, dtype=float)
    sm = causal_smooth(np.asarray(loss, dtype=float), window)
    out = []
    for hi, lo in zip(level_losses[:-1], level_losses[1:]):
        mid = (hi + lo) / 2
        above = np.flatnonzero(~(sm <= mid))
        if not len(sm) or (above.size and above[-1] == len(sm) - 1):
            out.append(math.nan)
        elif not above.size:
            out.append(float(x[0]))
        else:
            j = above[-1]
            if not math.isfinite(sm[j]):
                out.append(float(x[j + 1]))
            else:
                frac = (sm[j] - mid) / (sm[j] - sm[j + 1])
                out.append(float(x[j] + frac * (x[j + 1] - x[j])))
    return out


def data_steps(epoch: np.ndarray, step: np.ndarray, batch_size: int, length: int,
               updates_per_epoch: int, steps_per_update: int) -> np.ndarray:
    """Time steps of the training sequence consumed at the end of each logged block.

    An update consumes ``steps_per_update`` columns (n for TF style, update_every
    for true BPTT) of all ``batch_size`` rows. Epoch e starts at e * ``length``
    (columns an epoch leaves over when n does not divide them count as consumed).

    Args:
        epoch: [T] 0-based epoch of each block.
        step: [T] global updates completed at each block's end.
        batch_size, length, updates_per_epoch, steps_per_update: from the run's config.
    """
    epoch = np.asarray(epoch, dtype=np.int64)
    within = np.asarray(step, dtype=np.int64) - epoch * updates_per_epoch
    return epoch * length + within * steps_per_update * batch_size


def bootstrap_ci(values: np.ndarray, level: float = CI_LEVEL, n_boot: int = 1000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile-bootstrap confidence interval of each row, vectorised.

    Args:
        values: [G, U] array, one row per group (e.g. a (num_steps, step) point),
            one column per unit (run); NaN marks a unit absent from that group.
        level: confidence level.
        n_boot: bootstrap resamples (the same random draws serve every row).
        seed: seeds the resampling, so figures are reproducible.

    Returns:
        (mean, low, high), each [G]; NaN for rows without values.
    """
    v = np.sort(np.asarray(values, dtype=float), axis=1)  # NaN last: row g's values are v[g, :n[g]]
    n = np.sum(~np.isnan(v), axis=1)
    mean, low, high = (np.full(len(v), np.nan) for _ in range(3))
    rng, tail = np.random.default_rng(seed), 100 * (1 - level) / 2
    for m in np.unique(n[n > 0]):  # rows with m values share one [n_boot, m] set of draws
        rows = n == m
        sub = v[rows, :m]
        means = sub[:, rng.integers(0, m, size=(n_boot, m))].mean(axis=2)  # [rows, n_boot]
        mean[rows] = sub.mean(axis=1)
        low[rows], high[rows] = np.percentile(means, [tail, 100 - tail], axis=1)
    return mean, low, high


def band_table(df: pd.DataFrame, keys: list[str], x: str, y: str, unit: str = "run_id",
               level: float = CI_LEVEL) -> pd.DataFrame:
    """Mean of ``y`` over units at each (keys, x), with a bootstrap band, as a tidy table.

    Returns columns ``*keys, x, mean, low, high, units`` (units with a value), sorted.
    """
    cols = [*keys, x, "mean", "low", "high", "units"]
    data = df.dropna(subset=[y])
    if data.empty:
        return pd.DataFrame(columns=cols)
    wide = data.pivot_table(index=[*keys, x], columns=unit, values=y, aggfunc="mean", dropna=True)
    mean, low, high = bootstrap_ci(wide.to_numpy(), level=level)
    out = wide.index.to_frame(index=False)
    out["mean"], out["low"], out["high"] = mean, low, high
    out["units"] = wide.notna().sum(axis=1).to_numpy()
    return out[cols].sort_values([*keys, x], ignore_index=True)


def _first_staying(ns: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """Smallest n from which ``values`` stay >= threshold for every larger n (NaN: never)."""
    ok = values >= threshold  # NaN compares False: an unmeasured n breaks the run of successes
    if not ok.size or not ok[-1]:
        return math.nan
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
        empty if it never does), ``seeds`` (seeds with a learned value),
        ``seeds_crossed``, ``n_seed_min``, ``n_seed_median``, ``n_seed_max`` (the same
        per seed, over the seeds that cross), ``n_swept_min``, ``n_swept_max`` (the
        range of n searched: an ``n_mean`` equal to ``n_swept_min`` means "at or below").
    """
    keys = [*groups, "state_size", "lag"]
    cols = [*keys, "threshold", "n_mean", "seeds", "seeds_crossed", "n_seed_min", "n_seed_median",
            "n_seed_max", "n_swept_min", "n_swept_max"]
    data = deps.dropna(subset=["learned"])
    rows = []
    for key, g in data.groupby(keys, sort=True, dropna=False):
        wide = g.pivot_table(index="num_steps", columns="seed", values="learned", aggfunc="mean").sort_index()
        ns = wide.index.to_numpy(dtype=float)
        mean = wide.mean(axis=1).to_numpy()
        for t in thresholds:
            per_seed = np.array([_first_staying(ns, wide[s].to_numpy(), t) for s in wide.columns])
            crossed = per_seed[~np.isnan(per_seed)]
            rows.append({**dict(zip(keys, key)), "threshold": t, "n_mean": _first_staying(ns, mean, t),
                         "seeds": wide.shape[1], "seeds_crossed": len(crossed),
                         "n_seed_min": crossed.min() if len(crossed) else math.nan,
                         "n_seed_median": float(np.median(crossed)) if len(crossed) else math.nan,
                         "n_seed_max": crossed.max() if len(crossed) else math.nan,
                         "n_swept_min": ns[0], "n_swept_max": ns[-1]})
    return pd.DataFrame(rows, columns=cols)


def onset_table(deps: pd.DataFrame, keys: list[str], level: float = CI_LEVEL) -> pd.DataFrame:
    """Learn-onsets summarised per (keys): :func:`band_table` of ``onset`` over the runs
    that crossed, plus ``runs`` (all runs) and ``first_block`` (how many of the onsets
    are the run's first logged block, i.e. only an upper bound).

    Args:
        deps: rows with ``*keys``, ``run_id``, ``onset``, ``onset_first_block``.
        keys: grouping columns; the last one is the x axis of the band.
    """
    bands = band_table(deps, keys[:-1], keys[-1], "onset", level=level)
    counts = deps.groupby(keys, dropna=False).agg(
        runs=("run_id", "size"), first_block=("onset_first_block", "sum")).reset_index()
    return bands.merge(counts, on=keys, how="left")
