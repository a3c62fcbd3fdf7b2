"""Reading a sweep directory: run discovery and tolerant readers (pandas only).

A *run* is any directory under the sweep that holds ``summary.json`` or
``losses.csv`` (found recursively, so one directory per replica is covered).
``summary.json`` is written last, atomically: a run without it crashed or is
still running, and is read from its ``losses.csv`` and Hydra's config record
alone. Nothing here raises on a broken run: every problem is recorded in
``Run.problems`` with the reason. Used by :mod:`rnn_sweep.aggregate`.

Hostile trees are read, not trusted: the search never recurses or follows a
link (a symbolic link in place of a folder is read only when it leads to a run
directory, once; every other link is named), stops :data:`MAX_DEPTH` levels
down (saying so), and reads records only from regular files (a FIFO would
block). ``losses.csv`` rows that no run can log (see :func:`row_problem`:
negative steps or losses, steps that go back, a non-finite or diverging block
before the last row) are dropped one by one, each counted in a problem.
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

from rnn_sweep.baselines import learning_levels
from rnn_sweep.config import DataConfig, Dependency, validate_data
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
MAX_STEP = 10**15  # updates; far beyond any run, and data_steps (x batch x n) still fits in int64
MAX_EPOCH = 10**9


def read_losses(path: Path, diverge_loss: float = DIVERGE_LOSS,
                completed: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Parse ``losses.csv`` line by line, dropping malformed lines (truncated writes)
    and rows whose values no run can log (see :func:`row_problem`).

    Args:
        path: the file.
        diverge_loss: the run's ``train.diverge_loss``: a block above it ends the run.
        completed: the run's summary says it completed (so it never diverged).

    Returns (frame with int epoch, int step, float loss, float elapsed_s (NaN
    when the file has no such column); problems). A missing, non-regular or
    headerless file gives an empty frame and one problem.
    """
    empty = pd.DataFrame({"epoch": pd.Series(dtype=int), "step": pd.Series(dtype=int),
                          "loss": pd.Series(dtype=float), "elapsed_s": pd.Series(dtype=float)})
    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        return empty, [f"{LOSSES_FILE} is not a regular file: not read"]
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as err:
        return empty, [f"{LOSSES_FILE} unreadable ({err.strerror})"]
    header = lines[0].strip().split(",") if lines else []
    if not {"epoch", "step", "loss"} <= set(header):
        return empty, [f"{LOSSES_FILE} has no 'epoch,step,loss' header (got {lines[0][:40]!r})" if lines
                       else f"{LOSSES_FILE} is empty"]
    rows, bad = _parse_rows(lines, header)
    problems = []
    if bad:
        where = "its last line (truncated write?)" if bad == [len(lines)] else f"lines {bad[:5]}"
        problems.append(f"{LOSSES_FILE}: dropped {len(bad)} malformed line(s): {where}")
    rows, rejected = _plausible_rows(rows, diverge_loss, completed)
    if rejected:
        shown = "; ".join(f"line {n}: {why}" for n, why in rejected[:3])
        more = f"; and {len(rejected) - 3} more" if len(rejected) > 3 else ""
        problems.append(f"{LOSSES_FILE}: rejected {len(rejected)} row(s) with impossible values ({shown}{more})")
    frame = pd.DataFrame([r[1:] for r in rows], columns=list(empty.columns)) if rows else empty
    return frame, problems


def _parse_rows(lines: list[str], header: list[str]) -> tuple[list[tuple], list[int]]:
    """(line number, epoch, step, loss, elapsed_s) of each well-formed line; the numbers of the others."""
    ie, is_, il = header.index("epoch"), header.index("step"), header.index("loss")
    it = header.index("elapsed_s") if "elapsed_s" in header else None
    rows, bad = [], []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        try:
            if len(parts) != len(header):
                raise ValueError
            rows.append((number, int(parts[ie]), int(parts[is_]), float(parts[il]),
                         float(parts[it]) if it is not None else math.nan))
        except ValueError:
            bad.append(number)
    return rows, bad


def row_problem(epoch: int, step: int, loss: float, elapsed: float, previous: tuple[int, int] | None,
                last: bool, diverge_loss: float, completed: bool) -> str | None:
    """Why a parsed losses.csv row cannot have been logged by a run, or None if it can.

    A block mean is a cross-entropy (never negative); a non-finite one, or one
    above ``diverge_loss``, stops the run, so it can only be the last row, and
    never in a run that completed. Epochs count from 0 and never go back; the
    step (updates so far) is at least 1 and grows with every row.
    """
    if not 0 <= epoch <= MAX_EPOCH:
        return f"epoch {epoch} is not in 0..{MAX_EPOCH}"
    if not 1 <= step <= MAX_STEP:
        return f"step {step} is not in 1..{MAX_STEP}"
    if previous is not None and (step <= previous[1] or epoch < previous[0]):
        return f"epoch {epoch}, step {step} do not follow epoch {previous[0]}, step {previous[1]} of the row before"
    if loss < 0:
        return f"loss {loss!r} is negative"
    if not (math.isfinite(loss) and loss <= diverge_loss) and (completed or not last):
        where = "in a run that completed" if completed else "before the last row"
        return f"loss {loss!r} is above train.diverge_loss={diverge_loss:g} or not finite {where} " \
               "(such a block stops the run)"
    if not (math.isnan(elapsed) or 0 <= elapsed < math.inf):
        return f"elapsed_s {elapsed!r} is not a time >= 0"
    return None


def _plausible_rows(rows: list[tuple], diverge_loss: float, completed: bool) -> tuple[list[tuple], list[tuple]]:
    """Split parsed rows into those a run can log and (line number, reason) for the others."""
    kept, rejected = [], []
    for i, (number, epoch, step, loss, elapsed) in enumerate(rows):
        previous = (kept[-1][1], kept[-1][2]) if kept else None
        why = row_problem(epoch, step, loss, elapsed, previous, i == len(rows) - 1, diverge_loss, completed)
        if why is None:
            kept.append((number, epoch, step, loss, elapsed))
        else:
            rejected.append((number, why))
    return kept, rejected


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
        problems.append(f"no {LOSSES_FILE}: no curve or learn-onset")
    flat = {k: v for k, v in flatten(cfg).items() if k not in IGNORED}
    run_id = path.relative_to(sweep_dir).as_posix()
    return Run(run_id, summary, flat, rule, levels, losses, problems)
