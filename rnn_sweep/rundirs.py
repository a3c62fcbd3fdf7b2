"""Reading a sweep directory: run discovery and tolerant readers (pandas only).

A *run* is any directory under the sweep that holds ``summary.json`` or
``losses.csv`` (found recursively, so one directory per replica is covered).
``summary.json`` is written last, atomically: a run without it crashed or is
still running, and is read from its ``losses.csv`` and Hydra's config record
alone. Nothing here raises on a broken run: every problem is recorded in
``Run.problems`` with the reason. Used by :mod:`rnn_sweep.aggregate`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from rnn_sweep.baselines import learning_levels
from rnn_sweep.config import DataConfig, Dependency
from rnn_sweep.records import EXECUTION_KEYS, summary_problems

SUMMARY_FILE = "summary.json"
LOSSES_FILE = "losses.csv"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
# Execution settings, not identity (train.replicas: how seeds were grouped, not what each run is).
IGNORED = {*EXECUTION_KEYS, "train.replicas"}



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
    source: str = ""  # short label of the sweep directory it was found under (its name)
    source_dir: str = ""  # that directory, as given



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
    except (OSError, ValueError) as err:
        problems.append(f"{SUMMARY_FILE} unreadable ({type(err).__name__}: {str(err)[:60]}): treated as missing")
        return None
    bad = summary_problems(summary)
    if bad:
        problems.append(f"{SUMMARY_FILE} does not follow the schema ({'; '.join(bad)}): treated as missing, "
                        "not counted as completed")
        return None
    return summary


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
