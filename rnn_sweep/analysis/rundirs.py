"""Reading a sweep directory: run discovery and tolerant readers (pandas only).

A *run* is any directory under the sweep that holds ``summary.json`` or
``losses.csv`` (found recursively, so one directory per replica is covered).
``summary.json`` is written last, atomically: a run without it crashed or is
still running, and is read from its ``losses.csv`` and Hydra's config record
alone. Nothing here raises on a broken run: every problem is recorded in
``Run.problems`` with the reason. Used by :mod:`rnn_sweep.analysis.tables`.

Hostile trees are read, not trusted: the search never recurses or follows a
link (a symbolic link in place of a folder is read only when it leads to a run
directory, once; every other link is named), stops :data:`MAX_DEPTH` levels
down (saying so), and reads records only from regular files (a FIFO would
block). ``losses.csv`` rows that no run can log (see :func:`row_problem`:
negative or backward data intervals, negative losses, a non-finite or diverging
block before the last row) and ``checkpoints.csv`` rows that no run can write
(:func:`checkpoint_problem`) are dropped one by one, each counted in a problem.
A ``losses.csv`` of an older version (blocks of updates, ``epoch,step,loss``
header) is not read: the run is reported as one to rerun.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from rnn_sweep.task.baselines import learning_levels
from rnn_sweep.task.config import DataConfig, Dependency, validate_data
from rnn_sweep.run.records import CHECKPOINTS_FILE, EXECUTION_KEYS, LOSSES_FILE, SUMMARY_FILE, summary_problems

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
    losses: pd.DataFrame  # LOSS_COLUMNS: one row per block of the data grid (NaN loss kept for a diverged block)
    problems: list[str] = field(default_factory=list)
    source: str = ""  # short label of the sweep directory it was found under (its name)
    source_dir: str = ""  # that directory, as given
    checkpoints: pd.DataFrame | None = None  # CHECKPOINT_COLUMNS + learned_<lag>; empty without checkpoints.csv



MAX_DEPTH = 32  # folders searched below a sweep; Hydra layouts nest a few levels, a chain deeper is not a sweep


def _scan(top: Path, notes: list[str], label) -> Iterator[tuple[Path, list[os.DirEntry], set[str]]]:
    """Walk ``top`` without recursion and without following links: (folder, sub-folder entries, other names).

    A folder that cannot be listed, or lies more than :data:`MAX_DEPTH` levels
    down, is not searched, and ``notes`` says so (``label`` names a path for it).
    """
    stack = [(top, 0)]
    while stack:
        here, depth = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            notes.append(f"{label(here)}: not searched, cannot list it ({err.strerror or err})")
            continue
        dirs = [e for e in entries if e.is_dir(follow_symlinks=False)]
        yield here, dirs, {e.name for e in entries if not e.is_dir(follow_symlinks=False)}
        if dirs and depth >= MAX_DEPTH:
            notes.append(f"{label(here)}: its sub-folders are not searched (more than {MAX_DEPTH} levels below "
                         "the sweep; no run layout nests that deep)")
            continue
        stack += [(Path(e.path), depth + 1) for e in reversed(dirs)]


def _is_run_dir(path: Path) -> bool:
    return (path / SUMMARY_FILE).exists() or (path / LOSSES_FILE).exists()


def _linked_run(link: Path, label, notes: list[str]) -> Path | None:
    """A symbolic link in place of a folder: the link, if it leads to a run directory (then it is read)."""
    target = os.readlink(link)
    if not link.exists():
        notes.append(f"{label(link)}: skipped, a broken symbolic link (-> {target})")
    elif not link.is_dir():
        return None  # a linked file: not a folder, nothing to search
    elif not _is_run_dir(link):
        notes.append(f"{label(link)}: skipped, a symbolic link to a folder that is not a run directory "
                     f"(-> {target}); links are followed only to run directories (summary.json or losses.csv)")
    else:
        return link
    return None


def _unique_runs(runs: list[Path], label, notes: list[str]) -> list[Path]:
    """Drop a run directory reached twice (a link to a run also found under its own name, or two links)."""
    first: dict[str, Path] = {}
    for path in sorted(runs, key=lambda p: (p.is_symlink(), p)):  # a real folder wins over a link to it
        real = os.path.realpath(path)
        if real in first:
            notes.append(f"{label(path)}: skipped, the same run directory as {label(first[real])} "
                         "(a symbolic link to it)")
        else:
            first[real] = path
    return sorted(first.values())


def discover_runs(sweep_dir: Path, skip: tuple[Path, ...] = (),
                  notes: list[str] | None = None) -> tuple[list[Path], list[Path]]:
    """Run directories under ``sweep_dir`` and Hydra jobs that wrote no output yet.

    Hidden directories (``.hydra``, ``.jobs``, ``.submitit``) and ``skip`` are not
    searched for runs. A job has started when Hydra recorded it: ``<dir>/.hydra/``
    (single runs) or ``<sweep>/.jobs/<dir>/config.yaml`` (sweeps keep Hydra's
    records outside the run directories). A symbolic link in place of a folder is
    read when it leads to a run directory (once, however many paths lead there)
    and skipped otherwise. The walk never recurses and never follows links, so a
    link loop or a very deep chain of folders cannot stop it. Returns (runs,
    pending), both sorted; ``pending`` excludes jobs with runs at or below them
    (e.g. replica directories). What was not searched, and why, is appended to
    ``notes``.
    """
    notes = [] if notes is None else notes
    sweep_dir = Path(sweep_dir)

    def label(p: Path) -> str:
        return p.relative_to(sweep_dir).as_posix() if p != sweep_dir else str(sweep_dir)

    skip_ids = {(st.st_dev, st.st_ino) for st in (_stat(s) for s in skip) if st is not None}
    runs, started = [], []
    for here, dirs, names in _scan(sweep_dir, notes, label):
        if SUMMARY_FILE in names or LOSSES_FILE in names:
            runs.append(here)
        elif any(d.name == ".hydra" for d in dirs):
            started.append(here)
        if any(d.name == ".jobs" for d in dirs):
            started += _job_records(here, notes, label)
        dirs[:] = [d for d in dirs if not d.name.startswith(".") and _entry_id(d) not in skip_ids]
        runs += [p for p in (_linked_run(here / n, label, notes) for n in sorted(names)
                             if not n.startswith(".") and (here / n).is_symlink()) if p is not None]
    runs = _unique_runs(runs, label, notes)
    pending = {p for p in started if not any(r == p or p in r.parents for r in runs)}
    return runs, sorted(pending)


def _stat(path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _entry_id(entry: os.DirEntry) -> tuple[int, int] | None:
    try:
        return entry.stat(follow_symlinks=False).st_dev, entry.inode()
    except OSError:
        return None


def _job_records(here: Path, notes: list[str], label) -> list[Path]:
    """Run directories Hydra recorded in ``here/.jobs`` (one ``<run>/config.yaml`` each)."""
    jobs = here / ".jobs"
    return [here / folder.relative_to(jobs) for folder, _, names in _scan(jobs, notes, label)
            if "config.yaml" in names]


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


DIVERGE_LOSS = 10.0  # train.diverge_loss's default, for a run whose config does not say
MAX_DATA = 10**15  # time steps; far beyond any run, and still exact in a float64
MAX_STEP = 10**15  # updates
MAX_EPOCH = 10**9
LOSS_COLUMNS = ("epoch", "data_start", "data_end", "loss", "updates", "elapsed_s")
OLD_LOSS_HEADER = ("epoch", "step", "loss")  # before the data grid: one block per log_every updates
CHECKPOINT_COLUMNS = ("epoch", "data_steps", "updates", "heldout_loss")  # then learned_<lag>, one per dependency
_INTS = {"epoch", "data_start", "data_end", "updates", "data_steps"}


def _lines(path: Path, name: str) -> tuple[list[str] | None, str | None]:
    """The file's lines, or (None, why) for a file that is not a regular file or cannot be read."""
    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        return None, f"{name} is not a regular file: not read"
    try:
        return path.read_text(errors="replace").splitlines(), None
    except OSError as err:
        return None, f"{name} unreadable ({err.strerror})"


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=int if c in _INTS else float) for c in columns})


def read_losses(path: Path, diverge_loss: float = DIVERGE_LOSS,
                completed: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Parse ``losses.csv`` (the data grid: ``epoch,data_start,data_end,loss,updates,elapsed_s``)
    line by line, dropping malformed lines (truncated writes) and rows whose values no run
    can log (see :func:`row_problem`).

    A file in the format of older versions (``epoch,step,loss,...``: blocks of
    updates, whose width depends on n) is not read: one problem says to rerun it.

    Args:
        path: the file.
        diverge_loss: the run's ``train.diverge_loss``: a block above it ends the run.
        completed: the run's summary says it completed (so it never diverged).

    Returns (frame with the columns of :data:`LOSS_COLUMNS`; problems). A missing,
    non-regular, old-format or headerless file gives an empty frame and one problem.
    """
    lines, why = _lines(path, LOSSES_FILE)
    if lines is None:
        return _empty(LOSS_COLUMNS), [why]
    header = lines[0].strip().split(",") if lines else []
    if tuple(header[:3]) == OLD_LOSS_HEADER:
        return _empty(LOSS_COLUMNS), [f"{LOSSES_FILE} was written by an older version of rnn-sweep (blocks of "
                                      "updates, not of data): no curve or onset from it; rerun the run"]
    if tuple(header) != LOSS_COLUMNS:
        return _empty(LOSS_COLUMNS), [f"{LOSSES_FILE} has no '{','.join(LOSS_COLUMNS)}' header (got "
                                      f"{lines[0][:50]!r})" if lines else f"{LOSSES_FILE} is empty"]
    rows, problems = _parsed(lines, LOSS_COLUMNS, LOSSES_FILE)
    rows, rejected = _plausible(rows, lambda row, prev, last: row_problem(row, prev, last, diverge_loss, completed))
    problems += _rejected_note(LOSSES_FILE, rejected)
    return _frame(rows, LOSS_COLUMNS), problems


def _parsed(lines: list[str], columns, name: str) -> tuple[list[dict], list[str]]:
    """Well-formed rows ({column: value, "line": number}) and a problem naming the malformed lines."""
    rows, bad = [], []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        try:
            if len(parts) != len(columns):
                raise ValueError
            row = {c: (int(v) if c in _INTS else float(v) if v.strip() else math.nan)
                   for c, v in zip(columns, parts)}
        except ValueError:
            bad.append(number)
            continue
        rows.append({**row, "line": number})
    if not bad:
        return rows, []
    where = "its last line (truncated write?)" if bad == [len(lines)] else f"lines {bad[:5]}"
    return rows, [f"{name}: dropped {len(bad)} malformed line(s): {where}"]


def _plausible(rows: list[dict], check) -> tuple[list[dict], list[tuple[int, str]]]:
    """Split rows into those ``check(row, previous kept row, is last)`` accepts and (line, reason) for the others."""
    kept, rejected = [], []
    for i, row in enumerate(rows):
        why = check(row, kept[-1] if kept else None, i == len(rows) - 1)
        if why is None:
            kept.append(row)
        else:
            rejected.append((row["line"], why))
    return kept, rejected


def _rejected_note(name: str, rejected: list[tuple[int, str]]) -> list[str]:
    if not rejected:
        return []
    shown = "; ".join(f"line {n}: {why}" for n, why in rejected[:3])
    more = f"; and {len(rejected) - 3} more" if len(rejected) > 3 else ""
    return [f"{name}: rejected {len(rejected)} row(s) with impossible values ({shown}{more})"]


def _frame(rows: list[dict], columns) -> pd.DataFrame:
    if not rows:
        return _empty(columns)
    return pd.DataFrame([[r[c] for c in columns] for r in rows], columns=list(columns)).astype(
        {c: "int64" if c in _INTS else float for c in columns})


def row_problem(row: dict, previous: dict | None, last: bool, diverge_loss: float, completed: bool) -> str | None:
    """Why a parsed losses.csv row cannot have been logged by a run, or None if it can.

    A block covers data [data_start, data_end) after data_start time steps (so
    ``0 <= data_start < data_end``), never before the block before it ended, and
    epochs never go back; updates done are a count that never goes back. A block
    mean is a cross-entropy (never negative); a non-finite one, or one above
    ``diverge_loss``, stops the run, so it can only be the last row, and never in
    a run that completed.
    """
    epoch, start, end, loss, updates = (row[c] for c in LOSS_COLUMNS[:5])
    if not 0 <= epoch <= MAX_EPOCH:
        return f"epoch {epoch} is not in 0..{MAX_EPOCH}"
    if not 0 <= start < end <= MAX_DATA:
        return f"data {start}..{end} is not an interval in 0..{MAX_DATA}"
    if not 0 <= updates <= MAX_STEP:
        return f"updates {updates} is not in 0..{MAX_STEP}"
    if previous is not None and (start < previous["data_end"] or epoch < previous["epoch"]
                                 or updates < previous["updates"]):
        return (f"epoch {epoch}, data {start}..{end}, updates {updates} do not follow epoch {previous['epoch']}, "
                f"data ..{previous['data_end']}, updates {previous['updates']} of the row before")
    if loss < 0:
        return f"loss {loss!r} is negative"
    if not (math.isfinite(loss) and loss <= diverge_loss) and (completed or not last):
        where = "in a run that completed" if completed else "before the last row"
        return f"loss {loss!r} is above train.diverge_loss={diverge_loss:g} or not finite {where} " \
               "(such a block stops the run)"
    elapsed = row["elapsed_s"]
    if not (math.isnan(elapsed) or 0 <= elapsed < math.inf):
        return f"elapsed_s {elapsed!r} is not a time >= 0"
    return None


def read_checkpoints(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Parse ``checkpoints.csv`` (``epoch,data_steps,updates,heldout_loss,learned_<lag>...``).

    Malformed lines and rows no run can write (see :func:`checkpoint_problem`) are
    dropped, each counted in a problem. Returns (frame with those columns, lags as
    ints in the ``learned_<lag>`` names; problems); a missing file gives an empty
    frame and no problem (``train.checkpoints=0`` writes none).
    """
    if not path.exists() and not path.is_symlink():
        return _empty(CHECKPOINT_COLUMNS), []
    lines, why = _lines(path, CHECKPOINTS_FILE)
    if lines is None:
        return _empty(CHECKPOINT_COLUMNS), [why]
    header = lines[0].strip().split(",") if lines else []
    lags = header[len(CHECKPOINT_COLUMNS):]
    if tuple(header[:len(CHECKPOINT_COLUMNS)]) != CHECKPOINT_COLUMNS or not all(
            re.fullmatch(r"learned_\d{1,6}", c) for c in lags) or len(set(lags)) < len(lags):
        got = f"got {lines[0][:50]!r}" if lines else "it is empty"
        return _empty(CHECKPOINT_COLUMNS), [f"{CHECKPOINTS_FILE} has no '{','.join(CHECKPOINT_COLUMNS)},"
                                            f"learned_<lag>...' header ({got}): no onsets from it"]
    rows, problems = _parsed(lines, header, CHECKPOINTS_FILE)
    rows, rejected = _plausible(rows, checkpoint_problem)
    return _frame(rows, header), problems + _rejected_note(CHECKPOINTS_FILE, rejected)


def checkpoint_problem(row: dict, previous: dict | None, last: bool) -> str | None:
    """Why a parsed checkpoints.csv row cannot have been written by a run, or None if it can.

    Data seen and updates done never go back (data grows with every checkpoint),
    epochs neither; the held-out loss is a cross-entropy (>= 0; a non-finite one
    only at the last checkpoint, a diverged run's); a learned fraction is finite
    or empty (undefined).
    """
    epoch, data, updates, loss = (row[c] for c in CHECKPOINT_COLUMNS)
    if not 0 <= epoch <= MAX_EPOCH or not 0 <= data <= MAX_DATA or not 0 <= updates <= MAX_STEP:
        return f"epoch {epoch}, data_steps {data}, updates {updates} are not counts in range"
    if previous is not None and (data <= previous["data_steps"] or updates < previous["updates"]
                                 or epoch < previous["epoch"]):
        return (f"data_steps {data}, updates {updates} do not follow data_steps {previous['data_steps']}, "
                f"updates {previous['updates']} of the row before")
    if loss < 0 or (not math.isfinite(loss) and not last):
        return f"heldout_loss {loss!r} is negative, or not finite before the last row"
    bad = [c for c, v in row.items() if c.startswith("learned_") and math.isinf(v)]
    return f"{bad[0]} {row[bad[0]]!r} is not a fraction" if bad else None


def _read_summary(path: Path, problems: list[str]) -> dict | None:
    file = path / SUMMARY_FILE
    if not file.exists():
        problems.append(f"no {SUMMARY_FILE} (crashed, or still running): aggregated from {LOSSES_FILE} only")
        return None
    if not file.is_file():  # a FIFO or a device would block or never end
        problems.append(f"{SUMMARY_FILE} is not a regular file: treated as missing")
        return None
    try:
        summary = json.loads(file.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: nested deeper than any record
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
        if not file.is_file():
            continue
        try:
            cfg = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError, RecursionError):
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


def _levels_of(rule: DataConfig, problems: list[str]) -> list[dict]:
    """The rule's analytic levels; none (and a problem) for a rule no run could have used."""
    try:
        validate_data(rule)  # a rule no run could use (e.g. 40 dependencies: 2^40 cases) is not computed
        return [lv.to_dict() for lv in learning_levels(rule)]
    except (ValueError, TypeError, ArithmeticError, IndexError) as err:
        problems.append(f"its data rule gives no analytic levels ({type(err).__name__}: {str(err)[:60]})")
        return []


def _diverge_loss(cfg: dict) -> float:
    """The run's ``train.diverge_loss`` (the default when its config does not hold a usable one)."""
    value = cfg.get("train", {}).get("diverge_loss") if isinstance(cfg.get("train"), dict) else None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf
    return float(value) if ok else DIVERGE_LOSS


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
        levels = _levels_of(rule, problems)
    else:
        levels = []
        problems.append("no config found (summary or .hydra/config.yaml): analytic levels unknown")
    if (path / LOSSES_FILE).exists():
        losses, more = read_losses(path / LOSSES_FILE, _diverge_loss(cfg),
                                   completed=bool(summary) and summary.get("status") == "completed")
        problems += more
    else:
        losses, _ = read_losses(Path(os.devnull))
        problems.append(f"no {LOSSES_FILE}: no loss curve")
    checkpoints, more = read_checkpoints(path / CHECKPOINTS_FILE)
    problems += more
    flat = {k: v for k, v in flatten(cfg).items() if k not in IGNORED}
    run_id = path.relative_to(sweep_dir).as_posix()
    return Run(run_id, summary, flat, rule, levels, losses, problems, checkpoints=checkpoints)
