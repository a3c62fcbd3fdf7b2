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
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from rnn_sweep.baselines import learning_levels
from rnn_sweep.config import DataConfig, Dependency

SUMMARY_FILE = "summary.json"
LOSSES_FILE = "losses.csv"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
KEYS = ("backend", "style", "num_steps", "state_size", "seed")  # always columns of runs/curves
RENAMED = {"model.backend": "backend", "truncation.style": "style"}
# Execution settings (as in rnn_sweep.sweep): they never split a sweep into configurations.
IGNORED = {"train.progress", "train.threads", "train.replicas"}
DEFAULT_MARGIN = 0.25  # a loss within 25% of the gap to the next level "clearly" sits on a level
DEFAULT_SMOOTH = 5  # blocks in the centred rolling median used for the learn-onset step


@dataclass
class Run:
    """One run directory as read from disk (before any measuring)."""

    run_id: str  # path relative to the sweep directory
    summary: dict | None  # parsed summary.json; None when missing or unreadable
    config: dict  # flattened config: dotted keys -> scalar (lists as canonical strings)
    rule: DataConfig | None  # the data rule (None when no config could be found)
    levels: list[dict]  # [{name, lags, loss}] from the summary, else recomputed from the rule
    losses: pd.DataFrame  # epoch, step, loss, elapsed_s (NaN loss kept for diverged blocks)
    problems: list[str] = field(default_factory=list)


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


def discover_runs(sweep_dir: Path, skip: tuple[Path, ...] = ()) -> tuple[list[Path], list[Path]]:
    """Run directories under ``sweep_dir`` and Hydra jobs that wrote no output yet.

    Hidden directories (``.hydra``, ``.jobs``, ``.submitit``) and ``skip`` are not
    searched for runs. A job has started when Hydra recorded it: ``<dir>/.hydra/``
    (single runs) or ``<sweep>/.jobs/<dir>/config.yaml`` (sweeps keep Hydra's
    records outside the run directories). Returns (runs, pending), both sorted;
    ``pending`` excludes jobs with runs at or below them (e.g. replica directories).
    """
    runs, started = [], []
    skip_set = {Path(s).resolve() for s in skip}
    for root, dirs, files in os.walk(sweep_dir):
        here = Path(root)
        if ".jobs" in dirs:
            jobs = here / ".jobs"
            started += [here / rec.parent.relative_to(jobs) for rec in jobs.rglob("config.yaml")]
        if SUMMARY_FILE in files or LOSSES_FILE in files:
            runs.append(here)
        elif ".hydra" in dirs:
            started.append(here)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in skip_set)
    pending = {p for p in started if not any(r == p or p in r.parents for r in runs)}
    return sorted(runs), sorted(pending)


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested config -> {dotted key: scalar}; lists become one canonical string."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out[prefix + k] = json.dumps(v, sort_keys=True)
        else:
            out[prefix + k] = v
    return out


def rule_from_config(cfg: dict) -> DataConfig | None:
    """The data rule from a nested config dict; tolerant of keys this version does not know."""
    data = cfg.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("dependencies"), list):
        return None
    known = {f.name for f in fields(DataConfig)} - {"dependencies"}
    deps = [Dependency(lag=int(d["lag"]), effect=float(d["effect"])) for d in data["dependencies"]]
    return DataConfig(dependencies=deps, **{k: v for k, v in data.items() if k in known})


def rule_label(rule: DataConfig | None) -> str:
    """Short human label of a rule, e.g. ``P(Y=1)=0.5 +0.5·X[t-3] -0.25·X[t-8]; P(X=1)=0.5``."""
    if rule is None:
        return "unknown"
    terms = " ".join(f"{d.effect:+g}·X[t-{d.lag}]" for d in rule.dependencies)
    return f"P(Y=1)={rule.base_prob:g} {terms}; P(X=1)={rule.input_prob:g}".replace("  ", " ")


def read_losses(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Parse ``losses.csv`` line by line, dropping malformed lines (truncated writes).

    Returns (frame with int epoch, int step, float loss, float elapsed_s (NaN
    when the file has no such column); problems). A missing or
    headerless file gives an empty frame and one problem.
    """
    empty = pd.DataFrame({"epoch": pd.Series(dtype=int), "step": pd.Series(dtype=int),
                          "loss": pd.Series(dtype=float), "elapsed_s": pd.Series(dtype=float)})
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as err:
        return empty, [f"{LOSSES_FILE} unreadable ({err.strerror})"]
    header = lines[0].strip().split(",") if lines else []
    if not {"epoch", "step", "loss"} <= set(header):
        return empty, [f"{LOSSES_FILE} has no 'epoch,step,loss' header (got {lines[0][:40]!r})" if lines
                       else f"{LOSSES_FILE} is empty"]
    ie, is_, il = header.index("epoch"), header.index("step"), header.index("loss")
    it = header.index("elapsed_s") if "elapsed_s" in header else None
    rows, bad = [], []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        try:
            if len(parts) != len(header):
                raise ValueError
            rows.append((int(parts[ie]), int(parts[is_]), float(parts[il]),
                         float(parts[it]) if it is not None else math.nan))
        except ValueError:
            bad.append(number)
    problems = []
    if bad:
        where = "its last line (truncated write?)" if bad == [len(lines)] else f"lines {bad[:5]}"
        problems.append(f"{LOSSES_FILE}: dropped {len(bad)} malformed line(s): {where}")
    frame = pd.DataFrame(rows, columns=list(empty.columns)) if rows else empty
    return frame, problems


def _read_summary(path: Path, problems: list[str]) -> dict | None:
    file = path / SUMMARY_FILE
    if not file.exists():
        problems.append(f"no {SUMMARY_FILE} (crashed, or still running): aggregated from {LOSSES_FILE} only")
        return None
    try:
        summary = json.loads(file.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
        return summary
    except (OSError, ValueError) as err:
        problems.append(f"{SUMMARY_FILE} unreadable ({type(err).__name__}: {str(err)[:60]}): treated as missing")
        return None


def _hydra_records(path: Path, sweep_dir: Path):
    """Candidate Hydra config records of a run, nearest first: (file, the directory it describes)."""
    chain = [path]
    while chain[-1] != sweep_dir and chain[-1].parent != chain[-1] and sweep_dir in chain[-1].parents:
        chain.append(chain[-1].parent)
    for i, d in enumerate(chain):
        yield d / HYDRA_CONFIG, d
        for a in chain[i + 1:]:
            yield a / ".jobs" / d.relative_to(a) / "config.yaml", d


def _read_hydra_config(path: Path, sweep_dir: Path) -> dict | None:
    """The run's config as Hydra recorded it (its own record, else its nearest parent's).

    A replica directory ``seed=<s>`` below a job takes its seed from its name.
    """
    import yaml  # PyYAML (a dependency of omegaconf); only needed for runs without summary

    for file, owner in _hydra_records(path, sweep_dir):
        if not file.exists():
            continue
        try:
            cfg = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(cfg, dict):
            continue
        match = re.fullmatch(r"seed=(\d+)", path.name)
        if owner != path and match:
            cfg = {**cfg, "seed": int(match.group(1))}
        return cfg
    return None


def _valid_levels(levels) -> bool:
    return isinstance(levels, list) and bool(levels) and all(
        isinstance(lv, dict) and {"name", "lags", "loss"} <= set(lv) for lv in levels)


def read_run(path: Path, sweep_dir: Path) -> Run:
    """Read one run directory; never raises for broken files (they become ``problems``)."""
    problems: list[str] = []
    summary = _read_summary(path, problems)
    cfg = summary.get("config") if summary else None
    if not isinstance(cfg, dict):
        cfg = _read_hydra_config(path, sweep_dir) or {}
    rule = None
    try:
        rule = rule_from_config(cfg)
    except (KeyError, TypeError, ValueError):
        pass
    if summary and _valid_levels(summary.get("levels")):
        levels = summary["levels"]
    elif rule is not None:
        levels = [lv.to_dict() for lv in learning_levels(rule)]
    else:
        levels = []
        problems.append("no config found (summary or .hydra/config.yaml): analytic levels unknown")
    if (path / LOSSES_FILE).exists():
        losses, more = read_losses(path / LOSSES_FILE)
        problems += more
    else:
        losses, _ = read_losses(Path(os.devnull))
        problems.append(f"no {LOSSES_FILE}: no curve or learn-onset")
    flat = {k: v for k, v in flatten(cfg).items() if k not in IGNORED}
    run_id = path.relative_to(sweep_dir).as_posix()
    return Run(run_id, summary, flat, rule, levels, losses, problems)


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
