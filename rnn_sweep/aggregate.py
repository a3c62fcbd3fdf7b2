"""Turn a sweep directory into tidy tables (pandas/NumPy only: no TensorFlow, no Hydra).

A *run* is any directory under the sweep that holds ``summary.json`` or
``losses.csv`` (found recursively, so nested layouts such as one directory per
replica are covered). ``summary.json`` is written last, atomically: a run
without it crashed or is still running, and is aggregated from its
``losses.csv`` and its ``.hydra/config.yaml`` alone. Nothing here raises on a
broken run: every problem becomes a warning that names the run and the reason.

Tables (see :func:`runs_table`, :func:`curves_table`, :func:`grid_table`,
:func:`levels_table` for their columns) are long/tidy DataFrames.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnn_sweep.rundirs import (  # noqa: F401  (re-exported: the readers are part of this API)
    HYDRA_CONFIG, LOSSES_FILE, SUMMARY_FILE, Run, discover_runs, flatten, read_losses, read_run, rule_from_config,
    rule_label,
)

KEYS = ("backend", "style", "num_steps", "state_size", "seed")  # always columns of runs/curves
RENAMED = {"model.backend": "backend", "truncation.style": "style"}
DEFAULT_MARGIN = 0.25  # a loss within 25% of the gap to the next level "clearly" sits on a level
DEFAULT_SMOOTH = 5  # blocks in the centred rolling median used for the learn-onset step


@dataclass
class Aggregation:
    """Everything :func:`aggregate` found; see the table functions for columns."""

    sweep_dir: Path
    runs: pd.DataFrame
    curves: pd.DataFrame
    grid: pd.DataFrame
    levels: pd.DataFrame
    deps: pd.DataFrame  # run_id, lag, learned, onset: one row per run and dependency
    config_cols: list[str]  # columns that identify a configuration, seed excluded
    warnings: list[str]

    @property
    def panel_cols(self) -> list[str]:
        """Configuration columns other than num_steps/state_size that vary (split figures)."""
        return [c for c in self.config_cols if c not in ("num_steps", "state_size")]



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


def smooth_losses(loss: np.ndarray, window: int = DEFAULT_SMOOTH) -> np.ndarray:
    """Centred rolling median over ``window`` blocks (no lag, robust to a spike)."""
    return pd.Series(loss, dtype=float).rolling(window, center=True, min_periods=1).median().to_numpy()


def onset_steps(steps: np.ndarray, loss: np.ndarray, level_losses: list[float],
                window: int = DEFAULT_SMOOTH) -> list[float]:
    """Learn-onset step of each level k >= 1: the first logged step at which the
    smoothed loss is at or below the midpoint between levels k-1 and k (NaN if never)."""
    sm = smooth_losses(loss, window)
    out = []
    for hi, lo in zip(level_losses[:-1], level_losses[1:]):
        hit = np.flatnonzero(sm <= (hi + lo) / 2)
        out.append(float(steps[hit[0]]) if hit.size else math.nan)
    return out


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _key_values(run: Run) -> dict:
    """backend/style/num_steps/state_size/seed: the summary's (per replica) over the config's."""
    s, c = run.summary or {}, run.config
    return {"backend": s.get("backend", c.get("model.backend")), "style": s.get("style", c.get("truncation.style")),
            "num_steps": s.get("num_steps", c.get("num_steps")), "state_size": s.get("state_size", c.get("state_size")),
            "seed": s.get("seed", c.get("seed"))}


def _new_lags(levels: list[dict]) -> list[int]:
    """The lag each level k >= 1 adds to the one before it."""
    return [next(lag for lag in b["lags"] if lag not in a["lags"]) for a, b in zip(levels[:-1], levels[1:])]


def measure_run(run: Run, margin: float = DEFAULT_MARGIN, smooth: int = DEFAULT_SMOOTH) -> tuple[dict, list[dict]]:
    """Measured values of one run (a runs-table row without config columns) and its
    per-dependency rows ``{run_id, lag, learned, onset}``."""
    s, loss = run.summary or {}, run.losses
    level_losses = [float(lv["loss"]) for lv in run.levels]
    smoothed = smooth_losses(loss["loss"].to_numpy(), smooth) if len(loss) else np.array([])
    final = s.get("final_loss") if run.summary else (float(loss["loss"].iloc[-1]) if len(loss) else None)
    heldout = s.get("heldout_loss")
    basis, source = (heldout, "heldout") if _finite(heldout) else (
        (float(smoothed[-1]), "train") if len(smoothed) and math.isfinite(smoothed[-1]) else (None, None))
    row = {"status": s.get("status", "incomplete") if run.summary else "incomplete",
           "problem": "; ".join(run.problems),
           "steps": s.get("steps", int(loss["step"].iloc[-1]) if len(loss) else None),
           "epochs_completed": s.get("epochs_completed"),
           "final_loss": final, "heldout_loss": heldout, "heldout_optimal_loss": s.get("heldout_optimal_loss")}
    row.update({f"baseline_{k}": v for k, v in enumerate(level_losses)})
    row.update({"level": None, "level_k": None, "level_clear": None, "level_from": source})
    if basis is not None and level_losses:
        k, clear = classify_level(basis, level_losses, margin)
        row.update(level=run.levels[k]["name"], level_k=k, level_clear=clear)
    lags = _new_lags(run.levels) if run.levels else []
    onsets = (onset_steps(loss["step"].to_numpy(), loss["loss"].to_numpy(), level_losses, smooth)
              if len(loss) and lags else [math.nan] * len(lags))
    learned = s.get("learned_fraction") if isinstance(s.get("learned_fraction"), dict) else {}
    deps = [{"run_id": run.run_id, "lag": lag, "learned": learned.get(str(lag)), "onset": on}
            for lag, on in zip(lags, onsets)]
    timings = s.get("timings") if isinstance(s.get("timings"), dict) else {}
    # A run still going has no total yet: its training time so far is the best we know.
    row["wall_s"] = timings.get("total_s", float(loss["elapsed_s"].iloc[-1]) if len(loss) else None)
    return row, deps


def _sort_key(values: tuple) -> tuple:
    # None sorts last; numbers before strings, so mixed columns never raise.
    return tuple((v is None, not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v))
                 for v in values)


def varying_fields(runs: list[Run]) -> list[str]:
    """Dotted config fields with two or more values among the runs that record them (seed,
    the renamed keys, num_steps, state_size and the data rule's fields excluded: they have
    their own columns)."""
    own = {"seed", "num_steps", "state_size", "data.dependencies", "data.input_prob", "data.base_prob", *RENAMED}
    names = sorted({k for r in runs for k in r.config} - own)
    # A field a run does not record (older schema) is unknown there, not a different value.
    return [n for n in names if len({json.dumps(r.config[n], sort_keys=True) for r in runs if n in r.config}) > 1]


# Measured columns of the runs table, in order (baseline_k go before "level").
MEASURED = ["status", "problem", "steps", "epochs_completed", "final_loss", "heldout_loss", "heldout_optimal_loss",
            "level", "level_k", "level_clear", "level_from", "wall_s"]


def runs_table(runs: list[Run], extra: list[str], margin: float = DEFAULT_MARGIN, smooth: int = DEFAULT_SMOOTH,
               warnings: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per run, and the per-dependency long table.

    runs columns: ``run_id`` (path under the sweep); each varying config field in
    ``extra`` (dotted name); ``rule`` (the data rule, :func:`rule_label`);
    ``backend``, ``style``, ``num_steps``, ``state_size``, ``seed``; ``status``
    (completed / diverged from summary.json, ``incomplete`` when it has none:
    crashed or still running); ``problem`` (why the run is incomplete or partly
    unreadable, empty if fine); ``steps``; ``epochs_completed``; ``final_loss``
    (last logged block mean); ``heldout_loss``, ``heldout_optimal_loss`` (fresh
    data: the model, the true rule); ``baseline_k`` (analytic loss of level k =
    the k most informative dependencies known; k=0 knows nothing); ``level``,
    ``level_k`` (nearest level's name and k), ``level_clear`` (the loss lies within
    ``margin`` of the gap to the neighbouring level; False = between two levels),
    ``level_from`` (``heldout`` loss, or ``train``: the smoothed last training
    loss when there is no held-out loss); ``learned_lag<L>`` (probe: fraction of
    the lag-L effect captured, 1 = fully); ``onset_lag<L>`` (first step at which
    the smoothed training loss crossed the midpoint between the levels before and
    after lag L is known; empty if never); ``wall_s`` (run's total seconds; for an
    incomplete run the training seconds logged so far).

    deps columns: ``run_id``, ``lag``, ``learned``, ``onset`` (as above).

    A run whose files hold values of the wrong kind (valid JSON, wrong schema) is
    left out and named in ``warnings``.
    """
    rows, dep_rows = [], []
    for run in runs:
        try:
            measured, deps = measure_run(run, margin, smooth)
        except (KeyError, TypeError, ValueError, StopIteration, AttributeError) as err:
            if warnings is not None:
                warnings.append(f"{run.run_id}: skipped, summary.json does not follow the schema "
                                f"({type(err).__name__}: {str(err)[:80]})")
            continue
        rows.append({"run_id": run.run_id, **{f: run.config.get(f) for f in extra},
                     "rule": rule_label(run.rule), **_key_values(run), **measured})
        dep_rows += deps
    order = [*extra, "rule", *KEYS, "run_id"]
    rows.sort(key=lambda r: _sort_key(tuple(r[c] for c in order)))
    n_levels = max((len(r.levels) for r in runs), default=0)
    head = ["run_id", *extra, "rule", *KEYS, *MEASURED[:MEASURED.index("level")]]
    frame = pd.DataFrame(rows, columns=[*head, *(f"baseline_{k}" for k in range(n_levels)),
                                        *MEASURED[MEASURED.index("level"):]])
    deps = pd.DataFrame(dep_rows, columns=["run_id", "lag", "learned", "onset"]).astype({"learned": float})
    for prefix, col in (("learned_lag", "learned"), ("onset_lag", "onset")):
        wide = deps.pivot(index="run_id", columns="lag", values=col)
        for lag in sorted(deps["lag"].unique()):
            frame.insert(len(frame.columns) - 1, f"{prefix}{lag}", frame["run_id"].map(wide[lag]))
    return frame, deps


def curves_table(runs: list[Run], runs_df: pd.DataFrame, config_cols: list[str]) -> pd.DataFrame:
    """Loss curves, long: ``run_id``, the configuration columns (``config_cols``),
    ``seed``, ``epoch``, ``step`` (global training steps at the block's end),
    ``loss`` (block mean training loss, nats)."""
    ids = runs_df.set_index("run_id")[[*config_cols, "seed"]]
    by_id = {r.run_id: r for r in runs}  # in the runs table's order
    parts = [by_id[i].losses[["epoch", "step", "loss"]].assign(run_id=i) for i in ids.index if len(by_id[i].losses)]
    cols = ["run_id", *config_cols, "seed", "epoch", "step", "loss"]
    if not parts:
        return pd.DataFrame(columns=cols)
    long = pd.concat(parts, ignore_index=True)
    return long.join(ids, on="run_id")[cols]


def grid_table(runs_df: pd.DataFrame, deps: pd.DataFrame, config_cols: list[str]) -> pd.DataFrame:
    """Per configuration cell and dependency, statistics over seeds.

    Columns: the configuration columns (``config_cols``: varying fields, then
    num_steps, state_size); ``lag``; ``n_runs`` (runs in the cell); ``n_probed``
    (runs with a probe value); ``learned_mean``, ``learned_std`` (sample std,
    empty for one run), ``learned_min``, ``learned_max`` (probe fraction of the
    lag's effect); ``n_onset`` (runs whose loss crossed this lag's midpoint),
    ``onset_mean`` (their mean onset step); ``heldout_loss_mean``; ``level`` (the
    level most runs of the cell sit nearest to; ties -> fewer dependencies),
    ``level_k_mean`` (mean number of dependencies known by that measure).
    """
    cols = [*config_cols, "lag", "n_runs", "n_probed", "learned_mean", "learned_std", "learned_min",
            "learned_max", "n_onset", "onset_mean", "heldout_loss_mean", "level", "level_k_mean"]
    if deps.empty:
        return pd.DataFrame(columns=cols)
    merged = deps.merge(runs_df[["run_id", *config_cols, "heldout_loss", "level", "level_k"]], on="run_id")
    out = []
    for key, g in merged.groupby([*config_cols, "lag"], dropna=False, sort=True):
        levels = Counter((k, name) for k, name in zip(g["level_k"], g["level"]) if pd.notna(name) and pd.notna(k))
        top = max(levels.values(), default=0)
        learned, onset = g["learned"].astype(float), g["onset"].astype(float)
        out.append({**dict(zip([*config_cols, "lag"], key)), "n_runs": len(g), "n_probed": int(learned.count()),
                    "learned_mean": learned.mean(), "learned_std": learned.std(ddof=1), "learned_min": learned.min(),
                    "learned_max": learned.max(), "n_onset": int(onset.count()), "onset_mean": onset.mean(),
                    "heldout_loss_mean": pd.to_numeric(g["heldout_loss"], errors="coerce").mean(),
                    "level": min((kn for kn, c in levels.items() if c == top), default=(None, None))[1],
                    "level_k_mean": pd.to_numeric(g["level_k"], errors="coerce").mean()})
    return pd.DataFrame(out, columns=cols)


def levels_table(runs: list[Run]) -> pd.DataFrame:
    """Analytic levels of every rule in the sweep: ``rule``, ``level_k``, ``level``
    (name), ``lags`` (known lags, ``+``-joined), ``loss`` (nats)."""
    seen, rows = set(), []
    for r in runs:
        label = rule_label(r.rule)
        if label in seen or not r.levels:
            continue
        seen.add(label)
        rows += [{"rule": label, "level_k": k, "level": lv["name"], "lags": "+".join(map(str, lv["lags"])),
                  "loss": float(lv["loss"])} for k, lv in enumerate(r.levels)]
    return pd.DataFrame(rows, columns=["rule", "level_k", "level", "lags", "loss"])


def aggregate(sweep_dir: str | os.PathLike, margin: float = DEFAULT_MARGIN, smooth: int = DEFAULT_SMOOTH,
              skip: tuple[Path, ...] = ()) -> Aggregation:
    """Read every run under ``sweep_dir`` and build the tables; never raises for broken runs.

    Args:
        sweep_dir: a sweep directory (or a single run directory).
        margin: see :func:`classify_level`.
        smooth: rolling-median window (logged blocks) for the learn-onset step.
        skip: directories not to search (e.g. the aggregation's own output).

    Returns:
        An :class:`Aggregation`; ``runs`` is empty when nothing could be aggregated,
        and ``warnings`` names every run that was skipped or only partly read, and why.
    """
    sweep_dir = Path(sweep_dir)
    paths, pending = discover_runs(sweep_dir, skip)
    warnings = [f"{p.relative_to(sweep_dir).as_posix()}: started (has .hydra/) but wrote no {LOSSES_FILE} yet: "
                "still starting, or crashed early" for p in pending]
    if not paths:
        warnings.append(f"no runs under {sweep_dir}: no directory holds {SUMMARY_FILE} or {LOSSES_FILE}")
    usable = []
    for run in (read_run(p, sweep_dir) for p in paths):
        if run.summary is None and run.losses.empty:
            why = [p for p in run.problems if LOSSES_FILE in p.split(":")[0] or p.startswith("no " + LOSSES_FILE)]
            warnings.append(f"{run.run_id}: skipped, nothing to aggregate: no {SUMMARY_FILE} and no logged loss"
                            + "".join(f"; {p}" for p in why))
            continue
        if run.summary is None and not run.config:
            warnings.append(f"{run.run_id}: skipped: no {SUMMARY_FILE} and no Hydra config record "
                            "(.hydra/config.yaml or .jobs/), so its configuration is unknown")
            continue
        if run.summary and run.summary.get("status") == "failed":
            run.problems.insert(0, f"failed: {str(run.summary.get('error'))[:200]}")
        if run.problems:
            warnings.append(f"{run.run_id}: " + "; ".join(run.problems))
        usable.append(run)
    rules = sorted({rule_label(r.rule) for r in usable if r.rule is not None})
    if len(rules) > 1:
        warnings.append(f"runs use {len(rules)} different data rules ({' | '.join(rules)}): levels are computed "
                        "per run; grid and figures are split by rule")
    extra = varying_fields(usable)
    runs_df, deps = runs_table(usable, extra, margin, smooth, warnings)
    kept = set(runs_df["run_id"])
    usable = [r for r in usable if r.run_id in kept]
    varies = ["rule"] if len(rules) > 1 else []
    varies += [c for c in ("backend", "style") if not runs_df.empty and runs_df[c].nunique(dropna=False) > 1]
    config_cols = [*extra, *varies, "num_steps", "state_size"]
    for col in ("level_k", "steps", "epochs_completed", "num_steps", "state_size", "seed"):
        if col in runs_df:
            runs_df[col] = pd.to_numeric(runs_df[col], errors="coerce").astype("Int64")
    return Aggregation(sweep_dir, runs_df, curves_table(usable, runs_df, config_cols),
                       grid_table(runs_df, deps, config_cols), levels_table(usable), deps, config_cols, warnings)


TABLES = ("runs", "curves", "grid", "levels")


def write_tables(agg: Aggregation, out_dir: str | os.PathLike) -> list[Path]:
    """Write runs.csv, curves.csv, grid.csv, levels.csv and warnings.txt (one per line) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TABLES:
        path = out_dir / f"{name}.csv"
        getattr(agg, name).to_csv(path, index=False)
        written.append(path)
    path = out_dir / "warnings.txt"
    path.write_text("".join(w + "\n" for w in agg.warnings))
    return written + [path]


def bootstrap_ci(values: np.ndarray, level: float = 0.95, n_boot: int = 1000,
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
