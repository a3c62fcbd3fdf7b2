"""Turn one or more sweep directories into tidy tables (pandas/NumPy only: no TensorFlow, no Hydra).

A *run* is any directory under a sweep that holds ``summary.json`` or
``losses.csv`` (found recursively, so nested layouts such as one directory per
replica are covered). ``summary.json`` is written last, atomically: a run
without it (or with one that breaks the schema, see
:func:`rnn_sweep.analysis.rundirs.summary_problems`) crashed or is still running, and is
aggregated from its ``losses.csv`` and Hydra's config record alone. Nothing
here raises on a broken run: every problem becomes a warning that names the
run and the reason. Statistics (levels, onsets, intervals) are the
pure functions of :mod:`rnn_sweep.analysis.stats`.

Tables (see :func:`runs_table`, :func:`curves_table`, :func:`grid_table`,
:func:`levels_table`, :func:`rnn_sweep.analysis.stats.boundary_table` for their columns)
are long/tidy DataFrames.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rnn_sweep.analysis.outdir import TABLES, WARNINGS_FILE, write_atomic
from rnn_sweep.analysis.questions import FLAG, gradient_cells, seed_pairs, trained_arm
from rnn_sweep.analysis.rundirs import LOSSES_FILE, SUMMARY_FILE, Run, discover_runs, read_run, rule_label
from rnn_sweep.analysis.stats import (
    CENSORED, DEFAULT_MARGIN, DEFAULT_ONSET_THRESHOLD, LEARNED_STATUSES, UNDEFINED, boundary_table,
    checkpoint_onset, classify_level, clopper_pearson, median_with_censored,
)

KEYS = ("backend", "style", "num_steps", "state_size", "seed")  # always columns of runs/curves
RENAMED = {"model.backend": "backend", "truncation.style": "style"}
FINAL_FRACTION = 0.1  # a run without summary: its final loss is over the last 10% of the data it saw
NO_CHECKPOINTS = "no_checkpoints"  # onset status of a run that wrote no checkpoints.csv


@dataclass
class Aggregation:
    """Everything :func:`aggregate` found; see the table functions for columns."""

    sources: list[Path]  # the sweep directories read
    runs: pd.DataFrame
    curves: pd.DataFrame
    grid: pd.DataFrame
    levels: pd.DataFrame
    deps: pd.DataFrame  # see runs_table: one row per run and dependency, with config columns and seed
    boundary: pd.DataFrame  # see stats.boundary_table
    config_cols: list[str]  # columns that identify a configuration, seed excluded
    warnings: list[str]
    budget: str = ""  # the training budget of the runs, e.g. "1 epoch × 1M time steps"
    onset_threshold: float = DEFAULT_ONSET_THRESHOLD
    # questions.seed_pairs: trained minus reservoir control per seed and dependency (empty without a control)
    gradient: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def sweep_dir(self) -> Path:
        """The first (often the only) sweep directory."""
        return self.sources[0]

    @property
    def panel_cols(self) -> list[str]:
        """Configuration columns other than num_steps/state_size that vary (split figures)."""
        return [c for c in self.config_cols if c not in ("num_steps", "state_size")]



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


def run_lags(run: Run) -> list[int]:
    """The run's dependencies (lags): its rule's, in config order, else those its levels add."""
    if run.rule is not None and run.rule.dependencies:
        return [d.lag for d in run.rule.dependencies]
    return _new_lags(run.levels) if run.levels else []


def final_loss(run: Run) -> tuple[float | None, float | None, float | None]:
    """(final loss, data_start, data_end of the window it averages).

    From summary.json when it has one (its ``final_loss_window`` says which data);
    a run without summary (crashed, still running): the blocks that cover the last
    :data:`FINAL_FRACTION` of the data it logged, weighted by their width (the
    window is then those whole blocks).
    """
    s = run.summary or {}
    if run.summary:
        window = s.get("final_loss_window") if isinstance(s.get("final_loss_window"), dict) else {}
        start, end = window.get("data_start"), window.get("data_end")
        return s.get("final_loss"), start if _finite(start) else None, end if _finite(end) else None
    loss = run.losses[np.isfinite(run.losses["loss"])] if len(run.losses) else run.losses
    if not len(loss):
        return None, None, None
    end = float(loss["data_end"].iloc[-1])
    last = loss[loss["data_end"] > (1 - FINAL_FRACTION) * end]
    width = (last["data_end"] - last["data_start"]).to_numpy(dtype=float)
    return float(np.average(last["loss"], weights=width)), float(last["data_start"].iloc[0]), end


def dependency_rows(run: Run, data_end: float | None, threshold: float) -> list[dict]:
    """One row per dependency: final learned fraction, onset from checkpoints.csv and its status.

    ``learned_by_end``: the onset was reached (not censored); for a run without
    checkpoints, the final learned fraction is >= ``threshold``.
    """
    s = run.summary or {}
    learned = s.get("learned_fraction") if isinstance(s.get("learned_fraction"), dict) else {}
    cp = run.checkpoints if run.checkpoints is not None else pd.DataFrame()
    first = float(cp["data_steps"].iloc[1]) if len(cp) > 1 else math.nan  # the onset's resolution near the start
    rows = []
    for lag in run_lags(run):
        final = learned.get(str(lag))
        final = float(final) if _finite(final) else math.nan
        col = f"learned_{lag}"
        if len(cp) and col in cp:
            onset, status, at = checkpoint_onset(cp["data_steps"].to_numpy(), cp[col].to_numpy(), threshold,
                                                 end=data_end if _finite(data_end) else None)
            by_end = status in LEARNED_STATUSES if status != UNDEFINED else None
        else:
            onset, status, at = math.nan, NO_CHECKPOINTS, math.nan
            by_end = bool(final >= threshold) if math.isfinite(final) else None
        rows.append({"run_id": run.run_id, "lag": lag, "learned": final, "onset": onset, "onset_status": status,
                     "onset_at": at, "learned_by_end": by_end, "checkpoint_1": first,
                     "data_end": data_end if _finite(data_end) else math.nan})
    return rows


def measure_run(run: Run, margin: float = DEFAULT_MARGIN,
                threshold: float = DEFAULT_ONSET_THRESHOLD) -> tuple[dict, list[dict]]:
    """Measured values of one run (a runs-table row without config columns) and its
    per-dependency rows (see :func:`dependency_rows`; onsets in data steps)."""
    s, loss = run.summary or {}, run.losses
    level_losses = [float(lv["loss"]) for lv in run.levels]
    final, final_from, final_to = final_loss(run)
    heldout = s.get("heldout_loss")
    basis, source = (heldout, "heldout") if _finite(heldout) else (
        (final, "train") if _finite(final) else (None, None))
    data = s.get("data_steps") if _finite(s.get("data_steps")) else (
        float(loss["data_end"].iloc[-1]) if len(loss) else None)
    row = {"status": s.get("status", "incomplete") if run.summary else "incomplete",
           "problem": "; ".join(run.problems),
           "steps": s.get("steps", int(loss["updates"].iloc[-1]) if len(loss) else None),
           "data_steps": data, "epochs_completed": s.get("epochs_completed"),
           "final_loss": final, "final_loss_from": final_from, "final_loss_to": final_to,
           "heldout_loss": heldout, "heldout_optimal_loss": s.get("heldout_optimal_loss")}
    row.update({f"baseline_{k}": v for k, v in enumerate(level_losses)})
    row.update({"level": None, "level_k": None, "level_clear": None, "level_from": source})
    if basis is not None and level_losses:
        k, clear = classify_level(basis, level_losses, margin)
        row.update(level=run.levels[k]["name"], level_k=k, level_clear=clear)
    timings = s.get("timings") if isinstance(s.get("timings"), dict) else {}
    # A run still going has no total yet: its training time so far is the best we know.
    row["wall_s"] = timings.get("total_s", float(loss["elapsed_s"].iloc[-1]) if len(loss) else None)
    return row, dependency_rows(run, data, threshold)


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
    # A field a run does not record (older schema) is unknown there, not a different value; except
    # where the older runs' value is known (ASSUMED): trained runs must never pool with controls.
    return [n for n in names if len({json.dumps(config_value(r, n), sort_keys=True) for r in runs
                                     if n in r.config or n in ASSUMED}) > 1]


# Fields whose value in a run that does not record them is known: versions before the reservoir
# control trained every weight (the schema's default).
ASSUMED = {FLAG: True}


def config_value(run: Run, name: str):
    """The run's value of the dotted config field ``name``; :data:`ASSUMED` where it records none."""
    return run.config.get(name, ASSUMED.get(name))


# Measured columns of the runs table, in order (baseline_k go before "level").
MEASURED = ["status", "problem", "steps", "data_steps", "epochs_completed", "final_loss", "final_loss_from",
            "final_loss_to", "heldout_loss", "heldout_optimal_loss", "level", "level_k", "level_clear", "level_from",
            "wall_s"]
DEP_COLUMNS = ["run_id", "lag", "learned", "onset", "onset_status", "onset_at", "learned_by_end", "checkpoint_1",
               "data_end"]


def runs_table(runs: list[Run], extra: list[str], margin: float = DEFAULT_MARGIN,
               threshold: float = DEFAULT_ONSET_THRESHOLD,
               warnings: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per run, and the per-dependency long table.

    runs columns: ``run_id`` (path under the sweep, prefixed by the source's label
    when several sweeps are read); ``source`` (short label of the sweep directory
    it was read from); ``source_dir`` (that directory as given); each varying
    config field in ``extra`` (dotted name); ``rule`` (the data rule,
    :func:`rule_label`); ``backend``, ``style``, ``num_steps``, ``state_size``,
    ``seed``; ``status`` (completed / diverged from summary.json, ``incomplete``
    when it has none: crashed or still running); ``problem`` (why the run is
    incomplete or partly unreadable, empty if fine); ``steps`` (updates);
    ``data_steps`` (time steps of training sequence consumed, over the whole
    batch); ``epochs_completed``; ``final_loss`` (mean training loss over the
    window ``final_loss_from``..``final_loss_to``, data steps: summary.json's, by
    default the last 10% of the data; a run without summary: its logged blocks in
    the last 10% of the data it saw); ``heldout_loss``, ``heldout_optimal_loss``
    (fresh data: the model, the true rule); ``baseline_k`` (analytic loss of level
    k = the k most informative dependencies known); ``level``, ``level_k``,
    ``level_clear``, ``level_from`` (nearest level to the held-out loss, else to
    the final training loss); ``learned_lag<L>`` (probe at the end: fraction of
    the lag-L effect captured, 1 = fully); ``onset_lag<L>`` (data steps from which
    the learned fraction at the held-out checkpoints stays >= the onset threshold,
    interpolated, see :func:`rnn_sweep.analysis.stats.checkpoint_onset`; empty when not
    reached); ``onset_status_lag<L>`` (reached, first_checkpoint, untrained,
    censored, undefined, no_checkpoints); ``wall_s``.

    deps columns: ``run_id``, ``lag``, ``learned``, ``onset``, ``onset_status``,
    ``onset_at`` (the onset, or for a censored run its total data: "later than
    this"), ``learned_by_end`` (see :func:`dependency_rows`), ``checkpoint_1``
    (data steps of the first checkpoint after the start: onsets before it are only
    known to lie there), ``data_end`` (the run's total data).

    A run that still cannot be measured is left out and named in ``warnings``.
    """
    rows, dep_rows = [], []
    for run in runs:
        try:
            measured, deps = measure_run(run, margin, threshold)
        except (KeyError, TypeError, ValueError, StopIteration, AttributeError) as err:
            if warnings is not None:
                warnings.append(f"{run.run_id}: skipped, its records cannot be measured "
                                f"({type(err).__name__}: {str(err)[:80]})")
            continue
        rows.append({"run_id": run.run_id, "source": run.source, "source_dir": run.source_dir,
                     **{f: config_value(run, f) for f in extra},
                     "rule": rule_label(run.rule), **_key_values(run), **measured})
        dep_rows += deps
    order = [*extra, "rule", *KEYS, "run_id"]
    rows.sort(key=lambda r: _sort_key(tuple(r[c] for c in order)))
    n_levels = max((len(r.levels) for r in runs), default=0)
    head = ["run_id", "source", "source_dir", *extra, "rule", *KEYS, *MEASURED[:MEASURED.index("level")]]
    frame = pd.DataFrame(rows, columns=[*head, *(f"baseline_{k}" for k in range(n_levels)),
                                        *MEASURED[MEASURED.index("level"):]])
    deps = pd.DataFrame(dep_rows, columns=DEP_COLUMNS).astype(
        {"learned": float, "onset": float, "onset_at": float, "checkpoint_1": float, "data_end": float})
    for prefix, col in (("learned_lag", "learned"), ("onset_lag", "onset"), ("onset_status_lag", "onset_status")):
        wide = deps.pivot(index="run_id", columns="lag", values=col)
        for lag in sorted(deps["lag"].unique()):
            frame.insert(len(frame.columns) - 1, f"{prefix}{lag}", frame["run_id"].map(wide[lag]))
    return frame, deps


CURVE_COLUMNS = ["epoch", "data_start", "data_end", "data_mid", "updates", "loss"]


def curves_table(runs: list[Run], runs_df: pd.DataFrame, config_cols: list[str]) -> pd.DataFrame:
    """Loss curves on the data grid, long: ``run_id``, the configuration columns
    (``config_cols``), ``seed``, ``epoch``, ``data_start``, ``data_end`` (time steps of
    training data seen before and after the block, over the whole batch; one epoch =
    data.length; the same for every n except an epoch's last, partial block),
    ``data_mid`` (the block's centre, where it is drawn), ``updates`` (parameter
    updates done by the block's end), ``loss`` (mean training loss over exactly the
    block's data, nats)."""
    ids = runs_df.set_index("run_id")[[*config_cols, "seed"]]
    by_id = {r.run_id: r for r in runs}  # in the runs table's order
    parts = [by_id[i].losses.assign(run_id=i, data_mid=lambda f: (f["data_start"] + f["data_end"]) / 2)
             for i in ids.index if len(by_id[i].losses)]
    cols = ["run_id", *config_cols, "seed", *CURVE_COLUMNS]
    if not parts:
        return pd.DataFrame(columns=cols)
    long = pd.concat(parts, ignore_index=True)
    return long.join(ids, on="run_id")[cols]


def _level_of_cell(g: pd.DataFrame):
    """The level most runs of a cell sit nearest to (ties: fewer dependencies)."""
    levels = Counter((k, name) for k, name in zip(g["level_k"], g["level"]) if pd.notna(name) and pd.notna(k))
    top = max(levels.values(), default=0)
    return min((kn for kn, c in levels.items() if c == top), default=(None, None))[1]


def grid_table(runs_df: pd.DataFrame, deps: pd.DataFrame, config_cols: list[str]) -> pd.DataFrame:
    """Per configuration cell and dependency, statistics over seeds.

    Columns: the configuration columns (``config_cols``: varying fields, then
    num_steps, state_size); ``lag``; ``n_runs`` (runs in the cell); ``n_probed``
    (runs with a probe value); ``learned_mean`` (final learned fraction, raw),
    ``learned_std``, ``learned_min``, ``learned_max`` (range over seeds: seeds
    often sit on two levels, learned or not, where no interval for the mean covers
    at 3 seeds; the share below has one that does); ``seeds_learned``,
    ``seeds_judged`` (runs whose learned fraction stayed >= the onset threshold to
    the end, of the runs where that is known), ``learned_share`` and
    ``learned_share_low``/``_high`` (their ratio, exact Clopper-Pearson 95%);
    ``onset_median`` (data steps; censored runs count as later than the end; empty
    unless more than half learned); ``onset_censored``, ``onset_first_checkpoint``,
    ``onset_untrained`` (runs with that onset status); ``heldout_loss_mean``;
    ``level`` (the level most runs sit nearest to; ties -> fewer dependencies),
    ``level_k_mean``.
    """
    cols = [*config_cols, "lag", "n_runs", "n_probed", "learned_mean", "learned_std",
            "learned_min", "learned_max", "seeds_learned", "seeds_judged", "learned_share", "learned_share_low",
            "learned_share_high", "onset_median", "onset_censored", "onset_first_checkpoint", "onset_untrained",
            "heldout_loss_mean", "level", "level_k_mean"]
    if deps.empty:
        return pd.DataFrame(columns=cols)
    merged = deps.merge(runs_df[["run_id", *config_cols, "heldout_loss", "level", "level_k"]], on="run_id")
    out = []
    for key, g in merged.groupby([*config_cols, "lag"], dropna=False, sort=True):
        learned = g["learned"].astype(float)
        judged = g["learned_by_end"].dropna().astype(bool)
        k, n = int(judged.sum()), len(judged)
        share_low, share_high = clopper_pearson(k, n)
        status = g["onset_status"]
        timed = g[status.isin([*LEARNED_STATUSES, CENSORED])]
        out.append({**dict(zip([*config_cols, "lag"], key)), "n_runs": len(g), "n_probed": int(learned.count()),
                    "learned_mean": learned.mean(),
                    "learned_std": learned.std(ddof=1), "learned_min": learned.min(), "learned_max": learned.max(),
                    "seeds_learned": k, "seeds_judged": n, "learned_share": k / n if n else math.nan,
                    "learned_share_low": share_low, "learned_share_high": share_high,
                    "onset_median": median_with_censored(timed["onset"].to_numpy(float),
                                                         (timed["onset_status"] == CENSORED).to_numpy()),
                    "onset_censored": int((status == CENSORED).sum()),
                    "onset_first_checkpoint": int((status == "first_checkpoint").sum()),
                    "onset_untrained": int((status == "untrained").sum()),
                    "heldout_loss_mean": pd.to_numeric(g["heldout_loss"], errors="coerce").mean(),
                    "level": _level_of_cell(g), "level_k_mean": pd.to_numeric(g["level_k"], errors="coerce").mean()})
    return pd.DataFrame(out, columns=cols)


def _eng(x: float) -> str:
    """1000000 -> '1M', 20000 -> '20k', 1500 -> '1.5k' (data sizes in titles)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:g}{unit}"
    return f"{x:g}"


def _two_digits(x: float) -> float:
    """``x`` rounded to two significant digits (8,287,200 -> 8,300,000): data amounts in subtitles."""
    return float(f"{x:.2g}") if x else 0.0


def budget(runs: list[Run]) -> str:
    """The training budget of the runs from their configs, e.g. '1 epoch × 1M time steps'
    ('1-3 epochs × ...' when it varies; empty when no run records it). Runs trained to a
    criterion (``train.stop_patience`` > 0) say so, with the data they used: 'up to 10 epochs ×
    1M ..., each run until its held-out loss stopped improving (used 1.1M-8.3M)'."""
    epochs = sorted({int(r.config["train.epochs"]) for r in runs if _finite(r.config.get("train.epochs"))})
    length = sorted({int(r.config["data.length"]) for r in runs if _finite(r.config.get("data.length"))})
    if not epochs or not length:
        return ""
    e = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
    d = _eng(length[0]) if len(length) == 1 else f"{_eng(length[0])}-{_eng(length[-1])}"
    text = f"{e} epoch{'s' if epochs[-1] != 1 else ''} × {d} time steps of training data"
    caps = sorted({int(r.config["train.max_data_steps"]) for r in runs
                   if _finite(r.config.get("train.max_data_steps"))})
    if caps and caps[-1] < epochs[-1] * length[-1]:
        text += f" (at most {'-'.join(_eng(c) for c in dict.fromkeys([caps[0], caps[-1]]))} time steps)"
    if not any(_finite(r.config.get("train.stop_patience")) and r.config["train.stop_patience"] > 0 for r in runs):
        return text
    used = sorted(float(r.summary["data_steps"]) for r in runs if r.summary and _finite(r.summary.get("data_steps")))
    spent = f" (used {_eng(_two_digits(used[0]))}-{_eng(_two_digits(used[-1]))})" if used else ""
    return f"up to {text}, each run until its held-out loss stopped improving{spent}"


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


def source_labels(dirs: Sequence[Path]) -> list[str]:
    """Short distinct labels of sweep directories: their names, with parent parts added
    until no two collide (``a/quickstart``, ``b/quickstart``)."""
    parts = [Path(os.path.abspath(d)).parts for d in dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(d) for d in dirs]  # the same directory twice: refused by the CLI


def _read_runs(paths: list[Path], sweep_dir: Path, prefix: str, warnings: list[str]):
    """read_run for each path; a record nested too deep for Python's parsers skips its run, named."""
    for p in paths:
        try:
            yield read_run(p, sweep_dir)
        except RecursionError:
            warnings.append(f"{prefix}{p.relative_to(sweep_dir).as_posix()}: skipped, a record in it is nested "
                            "deeper than any run writes")


def _read_source(sweep_dir: Path, label: str | None, skip: tuple[Path, ...],
                 warnings: list[str]) -> list[Run]:
    """The usable runs of one sweep directory; ``label`` prefixes run ids when several are read."""
    notes: list[str] = []
    paths, pending = discover_runs(sweep_dir, skip, notes)
    prefix = f"{label}/" if label else ""
    warnings += [prefix + note for note in notes]
    warnings += [f"{prefix}{p.relative_to(sweep_dir).as_posix()}: started (has .hydra/) but wrote no {LOSSES_FILE} "
                 "yet: still starting, or crashed early" for p in pending]
    if not paths:
        warnings.append(f"no runs under {sweep_dir}: no directory holds {SUMMARY_FILE} or {LOSSES_FILE}")
    usable = []
    for run in _read_runs(paths, sweep_dir, prefix, warnings):
        run.run_id, run.source, run.source_dir = prefix + run.run_id, label or sweep_dir.name, str(sweep_dir)
        if run.summary is None and run.losses.empty:
            why = [p for p in run.problems if LOSSES_FILE in p.split(":")[0] or p.startswith("no " + LOSSES_FILE)
                   or p.startswith(SUMMARY_FILE)]
            warnings.append(f"{run.run_id}: skipped, nothing to aggregate: no usable {SUMMARY_FILE} and no logged "
                            "loss" + "".join(f"; {p}" for p in why))
            continue
        if run.summary is None and not run.config:
            warnings.append(f"{run.run_id}: skipped: no usable {SUMMARY_FILE} and no Hydra config record "
                            "(.hydra/config.yaml or .jobs/), so its configuration is unknown"
                            + "".join(f"; {p}" for p in run.problems if p.startswith(SUMMARY_FILE)))
            continue
        if run.summary and run.summary.get("status") == "failed":
            run.problems.insert(0, f"failed: {str(run.summary.get('error'))[:200]}")
        if run.problems:
            warnings.append(f"{run.run_id}: " + "; ".join(run.problems))
        usable.append(run)
    return usable


def _facets(runs_df: pd.DataFrame, extra: list[str], rules: list[str], several: bool) -> list[str]:
    """Configuration columns that split cells (seed excluded), num_steps and state_size last.

    Several config fields that are each fixed within every source directory (e.g. two
    experiments with different epochs, logging and evaluation sizes) are one facet,
    ``source``, so panel titles stay short; the fields stay columns of runs.csv.
    """
    varies = ["rule"] if len(rules) > 1 else []
    varies += [c for c in ("backend", "style") if not runs_df.empty and runs_df[c].nunique(dropna=False) > 1]
    if several and len(extra) > 1:
        per_source = [f for f in extra if (runs_df.groupby("source")[f].nunique(dropna=False) <= 1).all()]
        if len(per_source) > 1:
            extra = [f for f in extra if f not in per_source] + ["source"]
    return [*extra, *varies, "num_steps", "state_size"]


def aggregate(sweep_dirs: str | os.PathLike | Sequence[str | os.PathLike], margin: float = DEFAULT_MARGIN,
              onset_threshold: float = DEFAULT_ONSET_THRESHOLD, skip: tuple[Path, ...] = ()) -> Aggregation:
    """Read every run under one or more sweep directories and build the tables; never
    raises for broken runs.

    Args:
        sweep_dirs: a sweep directory (or a single run directory), or several: their
            runs are pooled; ``runs.source`` says where each came from, run ids are
            prefixed with a short label of their directory, and config fields that
            differ between them split figures like any swept key.
        margin: see :func:`classify_level`.
        onset_threshold: the learned fraction from which a dependency counts as learned
            (onsets, seeds that learned; see :func:`rnn_sweep.analysis.stats.checkpoint_onset`).
        skip: directories not to search (e.g. the aggregation's own output).

    Returns:
        An :class:`Aggregation`; ``runs`` is empty when nothing could be aggregated,
        and ``warnings`` names every run that was skipped or only partly read, and why.
    """
    dirs = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, os.PathLike)) else [Path(d) for d in sweep_dirs]
    labels = source_labels(dirs) if len(dirs) > 1 else [None]
    warnings: list[str] = []
    usable = [run for d, label in zip(dirs, labels) for run in _read_source(d, label, skip, warnings)]
    rules = sorted({rule_label(r.rule) for r in usable if r.rule is not None})
    if len(rules) > 1:
        warnings.append(f"runs use {len(rules)} different data rules ({' | '.join(rules)}): levels are computed "
                        "per run; grid and figures are split by rule")
    extra = varying_fields(usable)
    runs_df, deps = runs_table(usable, extra, margin, onset_threshold, warnings)
    kept = set(runs_df["run_id"])
    usable = [r for r in usable if r.run_id in kept]
    for col in ("level_k", "steps", "data_steps", "epochs_completed", "num_steps", "state_size", "seed"):
        runs_df[col] = pd.to_numeric(runs_df[col], errors="coerce").astype("Int64")
    config_cols = _facets(runs_df, extra, rules, len(dirs) > 1)
    if len(dirs) > 1:
        twins = runs_df[runs_df.duplicated([*config_cols, "rule", "seed"], keep=False)]
        if len(twins):
            warnings.append(f"{len(twins)} runs share their configuration and seed with a run of another source "
                            f"(e.g. {', '.join(twins['run_id'].head(2))}): all are kept, as extra seeds")
    with_cfg = deps.merge(runs_df[["run_id", *config_cols, "seed"]], on="run_id")
    groups = [c for c in config_cols if c not in ("num_steps", "state_size")]
    grid, bounds, pairs = with_gradient(grid_table(runs_df, deps, config_cols), boundary_table(with_cfg, groups),
                                        with_cfg, config_cols)
    return Aggregation(dirs, runs_df, curves_table(usable, runs_df, config_cols), grid, levels_table(usable),
                       with_cfg, bounds, config_cols, warnings, budget(usable), onset_threshold, pairs)


GRADIENT_BOUNDARY = ["n_mean", "at_smallest", "seeds", "seeds_reached", "n_seed_min", "n_seed_median", "n_seed_max"]


def with_gradient(grid: pd.DataFrame, bounds: pd.DataFrame, deps: pd.DataFrame,
                  config_cols: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The grid and boundary tables with what was learned through the gradient, when the sweep
    has trained runs and reservoir controls (``model.train_recurrent`` varies).

    Each trained row (``model.train_recurrent`` true or unrecorded) of ``grid`` gets
    :data:`~rnn_sweep.analysis.questions.GRADIENT_COLUMNS` (trained - control of its cell,
    paired by seed, :func:`~rnn_sweep.analysis.questions.gradient_cells`); each trained row of
    ``bounds`` gets ``gradient_<column>`` for the boundary columns in :data:`GRADIENT_BOUNDARY`:
    :func:`~rnn_sweep.analysis.stats.boundary_table` computed on the paired differences (the
    smallest n from which the mean difference, and each seed's, stays >= the threshold). Control
    rows keep these empty: each arm's own columns stay its own, never pooled.

    Returns:
        (grid, bounds, pairs): ``pairs`` is :func:`~rnn_sweep.analysis.questions.seed_pairs`
        (empty, and both tables unchanged, without both arms).
    """
    if FLAG not in config_cols or trained_arm(deps[FLAG]).nunique() < 2:
        return grid, bounds, pd.DataFrame()
    keys = [c for c in config_cols if c != FLAG]
    pairs = seed_pairs(deps, keys)
    cells = gradient_cells(pairs, keys)
    groups = [c for c in keys if c not in ("num_steps", "state_size")]
    gb = boundary_table(pairs, groups).rename(columns={c: f"gradient_{c}" for c in GRADIENT_BOUNDARY})
    on = [*groups, "state_size", "lag", "threshold"]
    return (_on_trained_rows(grid, cells, [*keys, "lag"]),
            _on_trained_rows(bounds, gb[[*on, *(f"gradient_{c}" for c in GRADIENT_BOUNDARY)]], on), pairs)


def gradient_boundary(bounds: pd.DataFrame) -> pd.DataFrame:
    """The boundary of what was learned through the gradient in the shape of
    :func:`~rnn_sweep.analysis.stats.boundary_table` (its ``gradient_<column>`` values under the
    plain names, one row per trained row that has them; ``model.train_recurrent`` dropped): empty
    when ``bounds`` has no gradient columns (:func:`with_gradient`)."""
    if "gradient_seeds" not in bounds:
        return bounds.iloc[:0]
    rows = bounds[bounds["gradient_seeds"].notna()].drop(columns=[*GRADIENT_BOUNDARY, FLAG])
    rows = rows.rename(columns={f"gradient_{c}": c for c in GRADIENT_BOUNDARY})
    return rows.astype({"at_smallest": bool, "seeds": int, "seeds_reached": int}).reset_index(drop=True)


def _on_trained_rows(table: pd.DataFrame, extra: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    """``table`` with the columns of ``extra`` matched on ``on``, on its trained rows only (control rows: empty)."""
    arm = "_trained_arm"
    out = table.assign(**{arm: trained_arm(table[FLAG])}).merge(extra.assign(**{arm: True}), on=[*on, arm],
                                                                  how="left")
    counts = [c for c in ("gradient_pairs", "gradient_seeds", "gradient_seeds_reached") if c in out]
    return out.drop(columns=arm).astype({c: "Int64" for c in counts})  # counts stay integers beside the empty rows


def write_tables(agg: Aggregation, out_dir: str | os.PathLike) -> list[Path]:
    """Write runs.csv, curves.csv, grid.csv, levels.csv, boundary.csv and warnings.txt
    (one per line) into ``out_dir``, each replaced atomically; nothing else there is touched."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_atomic(out_dir / f"{name}.csv", lambda tmp, t=getattr(agg, name): t.to_csv(tmp, index=False))
               for name in TABLES]
    text = "".join(w + "\n" for w in agg.warnings)
    return written + [write_atomic(out_dir / WARNINGS_FILE, lambda tmp: tmp.write_text(text))]
