"""The run record: which files a run writes, how they are written, what may be deleted.

This is the one place that knows the names of rnn-sweep's own files. Everything
that removes or replaces a file asks this module first, so the rule "only
rnn-sweep's own files are ever removed or overwritten" is written down once:

* a **run directory** may hold ``losses.csv``, ``summary.json``, their temp
  files (``.summary.json.<pid>.tmp``), the write test ``.write-test.<pid>``, the
  run lock ``.run.lock``, Hydra's per-run records (``.hydra/{config,hydra,
  overrides}.yaml`` and the job log ``cli.log``) and, for a replicated job,
  ``seed=<s>/`` directories holding the same records. Retraining removes exactly
  the run's own files (never Hydra's records of the current launch); a directory
  holding anything else is refused before any work (:func:`check_run_dir`).
* a **sweep directory** holds run directories (each checked as above before
  its job trains), ``.sweep.lock``, ``.failures``, ``multirun.yaml``, Hydra's
  ``.jobs/``, submitit's ``.submitit/``, the worker registry ``.workers/`` and
  the aggregator's output folder; anything else in it is never touched, so it
  is not refused (:func:`check_sweep_dir`).
* the current directory, its parents, ``~`` and ``/`` are never a run or sweep
  directory.

It also owns the atomic JSON writer (strict JSON: non-finite floats become
``null``), the execution-only keys of a config, a run's ``identity`` and the
strict reader of ``summary.json`` (:func:`summary_problems`). No TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

LOSSES_FILE = "losses.csv"  # training loss on the data grid (train.log_data_steps)
SUMMARY_FILE = "summary.json"
CHECKPOINTS_FILE = "checkpoints.csv"  # held-out loss and learned fractions during training
UPDATES_FILE = "updates.csv"  # the optional per-update log (train.log_updates)
LOSS_HEADER = "epoch,data_start,data_end,loss,updates,elapsed_s\n"
UPDATES_HEADER = "epoch,step,loss,block_steps,elapsed_s\n"
RUN_LOCK = ".run.lock"
SWEEP_LOCK = ".sweep.lock"
FAILURES_FILE = ".failures"  # in the sweep dir: one line per job that failed in this launch
HYDRA_DIR = ".hydra"
HYDRA_FILES = frozenset({"config.yaml", "hydra.yaml", "overrides.yaml"})
JOB_LOG = "cli.log"  # Hydra's job log: hydra.job.name is the module of @hydra.main (rnn_sweep/launch/cli.py)
JOBS_DIR = ".jobs"  # a sweep's Hydra records, one folder per job (conf/config.yaml: rnn_sweep_meta)
SWEEP_FILES = frozenset({SWEEP_LOCK, FAILURES_FILE, "multirun.yaml"})
SWEEP_HIDDEN_DIRS = frozenset({JOBS_DIR, ".submitit", ".workers"})  # .workers: rnn_sweep.run.locks
_RUN_FILE = re.compile(r"^(losses\.csv|checkpoints\.csv|updates\.csv|summary\.json|\.summary\.json\.\d+\.tmp|"
                       r"\.write-test\.\d+)$")
_SEED_DIR = re.compile(r"^seed=\d+$")  # a replicated job's per-seed records (rnn_sweep.run.train.replica_dir)

# Settings that change how a run executes, not what it computes: a finished run
# with other values is the same run. Dotted keys; conf/config.yaml's
# hydra.job.config.override_dirname.exclude_keys lists them too (a test checks).
EXECUTION_KEYS = ("train.progress", "train.threads")
# Keys that never name a sweep job's directory: the sweep's name and +force, plus the above.
DIRNAME_EXCLUDED_KEYS = ("experiment", "force", *EXECUTION_KEYS)


class UnsafeDirectory(RuntimeError):
    """A directory rnn-sweep would write into holds files it did not write (or is ., ~, /)."""


class ResultsWriteError(OSError):
    """The run directory cannot be created or written (read-only, full disk, ...)."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno N]" prefix
        return str(self.strerror)


# --- writing ------------------------------------------------------------------------------

def _strict(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None and NumPy scalars made plain."""
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        obj = obj.item()  # NumPy scalar (no NumPy import here)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/Infinity; null means "not a number"
    return obj


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write strict JSON to ``path`` via a temp file in the same directory + rename.

    NaN and infinities become ``null`` (``allow_nan=False`` guards the rest), so
    any JSON parser can read the file; readers of a crash see the old file or
    the new one, never half of one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(_strict(obj), f, indent=2, sort_keys=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except ResultsWriteError:
        raise
    except OSError as err:  # a full disk says only "[Errno 28]": name the file
        raise ResultsWriteError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass  # renamed into place, or never created


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir`` and prove a file can be written there, before any expensive work."""
    run_dir = Path(run_dir)
    probe_file = run_dir / f".write-test.{os.getpid()}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(probe_file, "w") as f:
            f.write("ok\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise ResultsWriteError(err.errno, f"cannot write results to {run_dir}: {err.strerror}") from err
    finally:
        try:
            probe_file.unlink()
        except OSError:
            pass


# --- identity -----------------------------------------------------------------------------

def identity(cfg: Any) -> dict:
    """The JSON form of a run config (dataclass or dict) without execution-only keys: what a run *is*."""
    import dataclasses

    raw = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    out = json.loads(json.dumps(raw))
    for dotted in EXECUTION_KEYS:
        section, key = dotted.split(".")
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


# --- what may be deleted ------------------------------------------------------------------

def _protected(path: Path) -> str | None:
    """Why ``path`` can never be a run or sweep directory, or None."""
    resolved = path.expanduser().resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        return "it is the file-system root"
    if resolved == Path.home().resolve():
        return "it is your home directory"
    if resolved == cwd or resolved in cwd.parents:
        return "it is the current directory or one of its parents"
    return None


def foreign_entries(run_dir: Path, hydra_records: bool = True) -> list[str]:
    """Entries of ``run_dir`` (relative names) that no rnn-sweep run writes, sorted.

    Args:
        run_dir: a run directory (need not exist).
        hydra_records: accept Hydra's per-run records (``.hydra/``, ``cli.log``);
            a replica's ``seed=<s>/`` directory never holds them.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return [] if not run_dir.exists() else [run_dir.name]
    out = []
    for entry in sorted(run_dir.iterdir()):
        name = entry.name
        if entry.is_symlink():
            out.append(name)  # a link may point at anything: never ours
        elif entry.is_file() and (_RUN_FILE.match(name) or name == RUN_LOCK
                                  or (hydra_records and name == JOB_LOG)):
            continue
        elif entry.is_dir() and hydra_records and name == HYDRA_DIR:
            out += [f"{name}/{p.name}" for p in sorted(entry.iterdir())
                    if p.name not in HYDRA_FILES or not p.is_file() or p.is_symlink()]
        elif entry.is_dir() and hydra_records and _SEED_DIR.match(name):
            out += [f"{name}/{p}" for p in foreign_entries(entry, hydra_records=False)]
        else:
            out.append(name)
    return out


def _refusal(path: Path, what: str, reason: str, at_risk: list[str]) -> UnsafeDirectory:
    shown = ", ".join(at_risk[:5]) + (f" and {len(at_risk) - 5} more" if len(at_risk) > 5 else "")
    risk = f" (files at risk: {shown})" if at_risk else ""
    return UnsafeDirectory(f"refusing to use {path} as a {what}: {reason}{risk}; "
                           f"choose an empty or new directory")


def _non_empty(directory: str | os.PathLike, key: str) -> Path:
    """``directory`` as a Path; an empty value (Hydra's way of saying the cwd) is refused."""
    if str(directory).strip() == "":
        raise UnsafeDirectory(f"refusing to use an empty {key} (it means the current directory); "
                              "choose an empty or new directory")
    return Path(directory)


def check_run_dir(run_dir: str | os.PathLike) -> None:
    """Refuse a run directory that holds files rnn-sweep did not write, or is ``.``, ``~``, ``/``, empty.

    Raises:
        UnsafeDirectory: one line naming the path and the files at risk.
    """
    path = _non_empty(run_dir, "hydra.run.dir")
    reason = _protected(path)
    if reason is None and is_sweep_dir(path):
        reason = "it is a sweep directory (it holds .sweep.lock, multirun.yaml or .jobs/)"
    if reason is not None:
        raise _refusal(path, "run directory", reason, _listing(path))
    foreign = foreign_entries(path)
    if foreign:
        raise _refusal(path, "run directory", "it holds files rnn-sweep did not write", foreign)


def is_sweep_dir(path: Path) -> bool:
    """Whether ``path`` looks like a sweep directory (lock, Hydra's multirun.yaml or job records)."""
    return any((Path(path) / name).exists() for name in (SWEEP_LOCK, "multirun.yaml", JOBS_DIR))


def _listing(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in Path(path).expanduser().resolve().iterdir())
    except OSError:
        return []


def check_sweep_dir(sweep_dir: str | os.PathLike, aggregate_dir: str = "aggregate") -> None:
    """Refuse a sweep directory where rnn-sweep would remove or replace something of the user's.

    At the top of a sweep directory rnn-sweep only ever creates, replaces or
    removes its own records (``.sweep.lock``, ``.failures``, Hydra's
    ``multirun.yaml`` and ``.jobs/``, ``.submitit/``, ``.workers/``); anything
    else there -- a user's notes, Optuna's ``optimization_results.yaml``, another
    folder -- is never touched, so it is not at risk and not refused. What a
    sweep writes below it are its jobs' run directories, and each of those is
    checked like a run directory (:func:`check_run_dir`, by the launcher before
    anything trains, and again by each job). Refused here: ``.``, ``~``, ``/``,
    a path that is a file, and an entry with one of those record names that is
    not what rnn-sweep would write there (a folder named ``.sweep.lock``, a link).
    The aggregator's output folder ``aggregate_dir`` is its own business.

    Raises:
        UnsafeDirectory: one line naming the path and the files at risk.
    """
    path = _non_empty(sweep_dir, "hydra.sweep.dir")
    reason = _protected(path)
    if reason is not None:
        raise _refusal(path, "sweep directory", reason, _listing(path))
    if path.is_symlink() and not path.exists():
        raise _refusal(path, "sweep directory", "it is a link to nothing", [])
    if path.exists() and not path.is_dir():
        raise _refusal(path, "sweep directory", "it is a file, not a directory", [])
    if not path.is_dir():
        return
    in_the_way = [name for name in sorted(SWEEP_FILES | SWEEP_HIDDEN_DIRS)
                  if (path / name).is_symlink()
                  or (name in SWEEP_FILES and (path / name).is_dir())
                  or (name in SWEEP_HIDDEN_DIRS and (path / name).exists() and not (path / name).is_dir())]
    if in_the_way:
        raise _refusal(path, "sweep directory", "it holds entries with the names of rnn-sweep's records that "
                       "rnn-sweep did not write", in_the_way)


def check_job_dir(run_dir: str | os.PathLike) -> None:
    """A sweep job's run directory: :func:`check_run_dir`, and not a link (its writes would land elsewhere).

    Raises:
        UnsafeDirectory: one line naming the path and the files at risk.
    """
    path = Path(run_dir)
    if path.is_symlink():
        raise _refusal(path, "run directory", "it is a link (a run's files would be written wherever it "
                       "points)", [])
    check_run_dir(path)


def clear_unfinished(run_dir: str | os.PathLike) -> list[str]:
    """Delete the files an unfinished run left (never Hydra's records of this launch); return their names.

    Refuses (and deletes nothing) when the directory holds anything else.

    Raises:
        UnsafeDirectory: see :func:`check_run_dir`.
    """
    path = Path(run_dir)
    check_run_dir(path)
    removed = []
    if not path.is_dir():
        return removed
    for entry in sorted(path.iterdir()):
        if entry.is_file() and _RUN_FILE.match(entry.name):
            entry.unlink()
            removed.append(entry.name)
        elif entry.is_dir() and _SEED_DIR.match(entry.name):
            for sub in sorted(entry.iterdir()):  # checked above: only run files
                sub.unlink()
            entry.rmdir()
            removed.append(entry.name)
    return removed


# --- reading ------------------------------------------------------------------------------

FINISHED = ("completed", "diverged")  # results a rerun keeps; "failed" is retried
STATUSES = (*FINISHED, "failed")


def _is_number(v, lo: float = -math.inf, none_ok: bool = True, nan_ok: bool = False) -> bool:
    if v is None:
        return none_ok
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return (nan_ok and math.isnan(v)) or (math.isfinite(v) and v >= lo)


def _is_int(v, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _levels_problem(levels) -> str | None:
    if not isinstance(levels, list) or not levels:
        return "levels is not a non-empty list"
    for lv in levels:
        if not (isinstance(lv, dict) and isinstance(lv.get("name"), str) and isinstance(lv.get("lags"), list)
                and all(_is_int(g, 1) for g in lv["lags"]) and _is_number(lv.get("loss"), 0.0, none_ok=False)):
            return f"levels entry {json.dumps(lv)[:60]} is not {{name: str, lags: [int], loss: number >= 0}}"
    return None


def summary_problems(summary: Any) -> list[str]:
    """What in a parsed summary.json breaks the schema ``train.train`` writes (empty: fine).

    A failed run's record only needs ``status``; a completed or diverged run needs
    its config, identity, levels and results with the right types and sane values.
    """
    if not isinstance(summary, dict):
        return [f"is a JSON {type(summary).__name__}, not an object"]
    status = summary.get("status")
    if status not in STATUSES:
        return [f"status={str(status)[:30]!r} is not one of {', '.join(STATUSES)}"]
    if status == "failed":
        return []
    out = []
    cfg = summary.get("config")
    if not isinstance(cfg, dict):
        out.append("no config")
    out += [f"{k}={str(summary.get(k))[:30]!r} is not an integer >= {lo}"
            for k, lo in (("num_steps", 1), ("state_size", 1), ("seed", 0), ("steps", 0))
            if not _is_int(summary.get(k), lo)]
    if isinstance(cfg, dict) and any(k in cfg and k in summary and cfg[k] != summary[k]
                                     for k in ("num_steps", "state_size", "seed")):
        out.append("num_steps/state_size/seed differ from its config")
    out += [f"{k}={str(summary.get(k))[:30]!r} is not a loss (a number >= 0{'' if status == 'completed' else ' or null'})"
            for k in ("final_loss", "heldout_loss", "heldout_optimal_loss")
            if not _is_number(summary.get(k), 0.0, none_ok=status != "completed" or k == "heldout_optimal_loss")]
    learned = summary.get("learned_fraction")
    if not isinstance(learned, dict) or not all(_is_number(v, nan_ok=True) for v in learned.values()):
        out.append(f"learned_fraction={str(learned)[:40]!r} is not {{lag: number or null}}")
    if (problem := _levels_problem(summary.get("levels"))) is not None:
        out.append(problem)
    return out


def read_summary(run_dir: str | os.PathLike) -> tuple[dict | None, str | None]:
    """A run's summary.json, checked: (summary, None), (None, None) if absent, (None, reason) if bad."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as err:
        return None, f"{path} is unreadable ({err})"
    problems = summary_problems(summary)
    if problems:
        return None, f"{path} is malformed: {'; '.join(problems)}"
    return summary, None
