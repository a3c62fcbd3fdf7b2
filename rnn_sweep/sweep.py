"""Running one job of a sweep safely: resume, skip, failure records, sweep lock.

Plain functions with no Hydra, so every rule here is testable on its own:

* :func:`plan` decides what a job does with its run directory: ``skip`` (a
  finished ``summary.json`` for the same config), ``train`` (nothing there, a
  crashed/killed run without ``summary.json``, or a ``failed`` record), or
  raises :class:`ConfigMismatch` (a finished run of a *different* config is
  never overwritten unless ``force``).
* :func:`run_job` applies the plan, prepares the worker (threads, Keras session,
  seeds), trains, and turns a training exception into a ``failed``
  ``summary.json`` before re-raising it as :class:`RunFailed`.
* :class:`SweepLock` keeps two sweeps out of one directory (lock file holding
  host and pid; a lock whose process is gone is stale and taken over).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
from pathlib import Path

from rnn_sweep.config import RunConfig

log = logging.getLogger("rnn_sweep.sweep")

SUMMARY_FILE = "summary.json"  # same name as rnn_sweep.train.SUMMARY_FILE (no TF import here)
LOCK_FILE = ".sweep.lock"
FINISHED = ("completed", "diverged")  # results a rerun keeps; "failed" is retried
# Execution settings: they do not change what a run computes, so a finished run
# with other values still counts as the same run.
EXECUTION_KEYS = (("train", "progress"), ("train", "threads"))


class ConfigMismatch(RuntimeError):
    """A finished run in this directory was made with a different configuration."""


class RunFailed(RuntimeError):
    """Training raised; the failure is recorded in the run's summary.json."""


class SweepLocked(RuntimeError):
    """Another live sweep holds the lock on this sweep directory."""


def identity(cfg: RunConfig | dict) -> dict:
    """The JSON form of a run config with execution-only keys removed (what a run *is*)."""
    raw = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    out = json.loads(json.dumps(raw))
    for section, key in EXECUTION_KEYS:
        out.get(section, {}).pop(key, None)
    return out


def first_difference(old: dict, new: dict, prefix: str = "") -> str | None:
    """Dotted name and values of the first differing key of two nested dicts, or None."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: finished run has {a!r}, this sweep asks for {b!r}"
    return None


def read_summary(run_dir: Path) -> dict | None:
    """The run's summary.json, or None when absent or unreadable (not a finished result)."""
    path = run_dir / SUMMARY_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("%s is unreadable (%s): treating the run as unfinished", path, err)
        return None


def plan(cfg: RunConfig, run_dir: str | os.PathLike, force: bool = False) -> str:
    """Decide what a sweep job does with ``run_dir``: ``"skip"`` or ``"train"``.

    A replicated job (``train.replicas`` K > 1) is finished when all K per-seed
    records ``run_dir/seed=<s>/summary.json`` are.

    Raises:
        ConfigMismatch: a completed or diverged run with another config is there
            and ``force`` is false.
    """
    run_dir = Path(run_dir)
    if cfg.train.replicas > 1:  # K records in run_dir/seed=<s>/ (see rnn_sweep.train.train)
        records = [(run_dir / f"seed={cfg.seed + k}",
                    dataclasses.replace(cfg, seed=cfg.seed + k, train=dataclasses.replace(cfg.train, replicas=1)))
                   for k in range(cfg.train.replicas)]
    else:
        records = [(run_dir, cfg)]
    diffs = []
    for record_dir, record_cfg in records:
        summary = read_summary(record_dir)
        if summary is None or summary.get("status") not in FINISHED:
            return "train"
        diffs.append(first_difference(identity(summary.get("config") or {}), identity(record_cfg)))
    diff = next((d for d in diffs if d is not None), None)
    if diff is None and not force:
        return "skip"
    if diff is not None and not force:
        raise ConfigMismatch(
            f"{run_dir} holds a finished run of a different config ({diff}); it is never overwritten: "
            "use another hydra.sweep.dir, or rerun with +force=true to replace it")
    return "train"


def clear_partial(run_dir: Path) -> list[str]:
    """Delete what an unfinished (crashed, killed, failed or forced) run left; return the names.

    Hydra's records of the current launch (``.hydra/``, ``*.log``: a single run
    keeps them in its run directory, already open) are left alone.
    """
    removed = []
    if not run_dir.is_dir():
        return removed
    if (run_dir / LOCK_FILE).exists() or (run_dir / "multirun.yaml").exists():
        raise RuntimeError(f"{run_dir} is a sweep directory, not a run directory: refusing to clear it")
    for entry in sorted(run_dir.iterdir()):
        if entry.name == ".hydra" or entry.suffix == ".log":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed


def prepare_worker(seed: int, threads: int) -> None:
    """Per job, in a possibly reused worker: TF threads (first job only), Keras state, seeds.

    ``keras.utils.clear_session`` drops Keras' global state (layer name counters,
    graphs of Keras models) left by the previous job in this process; it does not
    touch :mod:`rnn_sweep.engine`'s cache of compiled epochs, which holds its own
    references to the traced functions, so same-shape jobs still reuse them.
    """
    from rnn_sweep.runtime import import_tf

    import_tf(threads)
    if threads:
        log.info("TensorFlow intra-op threads for this job: %d", threads)
    import keras

    keras.utils.clear_session()
    # Seeds Python's random, NumPy's global generator, tf.random and Keras' seed generator,
    # for backends that draw from them (train() seeds its own NumPy generators anyway).
    keras.utils.set_random_seed(seed)


def failure_summary(cfg: RunConfig, err: BaseException) -> dict:
    """A summary.json body for a run whose training raised (status ``failed``)."""
    from rnn_sweep.baselines import learning_levels

    return {
        "status": "failed",
        "backend": cfg.model.backend, "cell": cfg.model.cell, "style": cfg.truncation.style,
        "num_steps": cfg.num_steps, "state_size": cfg.state_size, "seed": cfg.seed,
        "final_loss": None, "heldout_loss": None, "heldout_optimal_loss": None,
        "learned_fraction": {}, "levels": [lv.to_dict() for lv in learning_levels(cfg.data)],
        "steps": None, "epochs_completed": None, "diverged_at_step": None, "timings": {},
        "versions": {}, "config": dataclasses.asdict(cfg),
        "error": f"{type(err).__name__}: {err}",
    }


def run_job(cfg: RunConfig, run_dir: str | os.PathLike, force: bool = False, threads: int = 0) -> dict:
    """One sweep job: skip a finished run, else train from scratch; record failures.

    Args:
        cfg: validated run configuration.
        run_dir: the run's directory (created if missing).
        force: retrain even over a finished run of another (or the same) config.
        threads: TensorFlow intra-op threads for this worker (0 = TF default).

    Returns:
        The run's summary (the existing one when skipped).

    Raises:
        ConfigMismatch: see :func:`plan`.
        RunFailed: training raised; ``summary.json`` records status ``failed``.
    """
    run_dir = Path(run_dir)
    if plan(cfg, run_dir, force) == "skip":
        log.info("skipping %s: already finished with the same config", run_dir)
        if cfg.train.replicas > 1:
            from rnn_sweep.train import combined_summary

            return combined_summary([read_summary(run_dir / f"seed={cfg.seed + k}") for k in range(cfg.train.replicas)])
        return read_summary(run_dir)
    removed = clear_partial(run_dir)
    if removed:
        log.info("retraining %s from scratch (removed %s)", run_dir, ", ".join(removed))
    from rnn_sweep.train import train, write_json_atomic

    try:
        prepare_worker(cfg.seed, threads)
        return train(cfg, run_dir)
    except Exception as err:  # noqa: BLE001 -- any training error becomes a recorded failure
        log.exception("run %s failed", run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / SUMMARY_FILE, failure_summary(cfg, err))
        raise RunFailed(f"{run_dir}: {type(err).__name__}: {err} (recorded in summary.json)") from err


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepLock:
    """An exclusive lock file ``<sweep dir>/.sweep.lock`` holding ``host pid``.

    Created with O_EXCL, so of two sweeps starting together exactly one wins. A
    lock left by a dead process on this host (a killed sweep) is stale and taken
    over; a lock from another host cannot be checked and is respected.
    """

    def __init__(self, sweep_dir: str | os.PathLike):
        self.path = Path(sweep_dir) / LOCK_FILE
        self.owner = f"{socket.gethostname()} {os.getpid()}"

    def acquire(self) -> None:
        """Take the lock, or raise SweepLocked naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._remove_if_stale():
                    raise SweepLocked(self._held_message()) from None
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.owner + "\n")
            return
        raise SweepLocked(self._held_message())

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        try:
            if self.path.read_text().strip() == self.owner:
                self.path.unlink()
        except FileNotFoundError:
            pass

    def _holder(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except FileNotFoundError:
            return None
        except ValueError:
            return ("?", -1)  # being written right now, or garbage: treat as held

    def _remove_if_stale(self) -> bool:
        holder = self._holder()
        if holder is None:
            return True  # released meanwhile: try again
        host, pid = holder
        if host != socket.gethostname() or pid < 0 or _pid_alive(pid):
            return False
        log.warning("removing stale sweep lock %s (process %d is gone)", self.path, pid)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        return True

    def _held_message(self) -> str:
        holder = self._holder()
        who = f"process {holder[1]} on {holder[0]}" if holder else "another process"
        return (f"another sweep ({who}) is running in {self.path.parent}; wait for it to finish, "
                f"or choose another hydra.sweep.dir (if that process is gone, delete {self.path})")
