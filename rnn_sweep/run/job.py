"""The rules a sweep job follows with its directory: resume, skip, locks, worker processes.

Plain functions with no Hydra, so every rule here is testable on its own (the
function that applies them to a pack of jobs is :func:`rnn_sweep.run.core.execute_pack`):

* :func:`plan` decides what a job does with its run directory: ``skip`` (a
  finished ``summary.json`` for the same config), ``train`` (nothing there, a
  crashed/killed run without ``summary.json``, or a ``failed`` record), or
  raises :class:`ConfigMismatch` (a finished run of a *different* config is
  never overwritten unless ``force``).
* :func:`clear_partial` removes what an unfinished run left; :func:`prepare_worker`
  sets up the process for a job (threads, Keras session, seeds).
* :class:`SweepLock` keeps two sweeps out of one directory (lock file holding
  host, pid and start time; a lock whose process and workers are gone is stale
  and taken over), :func:`run_lock` two writers out of one run directory: a
  single run and every sweep job that trains hold it while they write.
* :func:`die_with_parent` makes a parallel launcher's worker process die with
  the sweep that started it (a killed sweep leaves no worker training).

What may be deleted, and the record's file names, are :mod:`rnn_sweep.run.records`'.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from rnn_sweep.run import records
from rnn_sweep.task.config import RunConfig
from rnn_sweep.run.locks import DirLock, live_workers, register_worker
from rnn_sweep.run.records import FINISHED, identity

log = logging.getLogger("rnn_sweep.run.job")

LOCK_FILE = records.SWEEP_LOCK
SWEEP_PID_ENV = "RNN_SWEEP_SWEEP_PID"  # the sweep process, for its workers (guard_worker)


class ConfigMismatch(RuntimeError):
    """A finished run in this directory was made with a different configuration."""


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
    """The run's summary.json, or None when absent, unreadable or malformed (not a finished result)."""
    summary, problem = records.read_summary(run_dir)
    if problem is not None:
        log.warning("%s: treating the run as unfinished", problem)
    return summary


def plan(cfg: RunConfig, run_dir: str | os.PathLike, force: bool = False) -> str:
    """Decide what a sweep job does with ``run_dir``: ``"skip"`` or ``"train"``.

    A replicated job (``train.replicas`` K > 1) is finished when all K per-seed
    records ``run_dir/seed=<s>/summary.json`` are.

    Raises:
        ConfigMismatch: a completed or diverged run with another config is there
            and ``force`` is false.
    """
    run_dir = Path(run_dir)
    if cfg.train.replicas > 1:  # K records in run_dir/seed=<s>/ (see rnn_sweep.run.train.train)
        per_seed = [(run_dir / f"seed={cfg.seed + k}",
                    dataclasses.replace(cfg, seed=cfg.seed + k, train=dataclasses.replace(cfg.train, replicas=1)))
                   for k in range(cfg.train.replicas)]
    else:
        per_seed = [(run_dir, cfg)]
    diffs = []
    for record_dir, record_cfg in per_seed:
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
    """Delete the files an unfinished (crashed, killed, failed or forced) run left; return the names.

    Only rnn-sweep's own files (:func:`rnn_sweep.run.records.clear_unfinished`):
    a directory holding anything else raises UnsafeDirectory and nothing is
    deleted. Hydra's records of the current launch are kept.
    """
    return records.clear_unfinished(run_dir)


def prepare_worker(seed: int, threads: int, backend: str = "keras") -> None:
    """Per job, in a possibly reused worker: TF threads (first job only), global seeds, Keras state.

    For a Keras-based ``backend`` (static, dynamic, keras), ``keras.utils.clear_session``
    drops Keras' global state (layer name counters, graphs of Keras models) left by the
    previous job in this process; it does not touch :mod:`rnn_sweep.model.engine`'s cache of
    compiled epochs, which holds its own references to the traced functions, so
    same-shape jobs still reuse them. The scratch backend creates no Keras state, and
    clearing costs ~0.1-0.2 s (a full garbage collection) per pack, 10-20 s over the
    300-run grid, so it is skipped there.
    """
    import random

    import numpy as np

    from rnn_sweep.run.runtime import import_tf

    tf = import_tf(threads)
    if threads:
        log.info("TensorFlow intra-op threads for this job: %d", threads)
    if backend != "scratch":
        import keras

        keras.utils.clear_session()
        # Also seeds Keras' own seed generator, for Keras layers that draw from it.
        keras.utils.set_random_seed(seed)
        return
    # Python's random, NumPy's global generator and tf.random, for code that draws from
    # them (train() seeds its own NumPy generators anyway).
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.random.set_seed(seed)


class SweepLock(DirLock):
    """An exclusive lock file ``<sweep dir>/.sweep.lock`` holding ``host pid`` (see rnn_sweep.run.locks).

    Stale (taken over) only when its holder *and* every worker the sweep
    registered (:func:`guard_worker`) are gone.
    """

    def __init__(self, sweep_dir: str | os.PathLike) -> None:
        super().__init__(sweep_dir, LOCK_FILE, "sweep", "wait for it to finish, or choose another hydra.sweep.dir")

    def acquire(self) -> None:
        """Take the lock; then drop the ``.workers/`` entries that killed sweeps left behind."""
        super().acquire()
        live_workers(self.path.parent)


RUN_HINT = "wait for it to finish, or choose another hydra.run.dir"
SWEEP_JOB_HINT = "wait for it to finish and rerun the sweep, or choose another hydra.sweep.dir"


def run_lock(run_dir: str | os.PathLike, hint: str = RUN_HINT) -> DirLock:
    """The lock (``<run dir>/.run.lock``) held by whatever writes ``run_dir``: a single run or a sweep job."""
    return DirLock(run_dir, records.RUN_LOCK, "run", hint)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Make this worker process exit when ``parent_pid`` (the sweep process that forked it) dies.

    Loky (joblib) and submitit's local executor start workers from the sweep
    process; a ``kill -9`` of the sweep left them training for minutes and
    writing into run directories a rerun was retraining. Two guards: the
    kernel's parent-death signal (Linux: SIGKILL as soon as the parent dies)
    and a watchdog thread that exits within a second of being re-parented
    (platforms without prctl).
    """
    if os.getppid() != parent_pid:
        return  # not a direct child (Slurm, Ray): those workers belong to their scheduler
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(1.0)
        os._exit(1)

    if not any(t.name == "rnn-sweep-parent-watchdog" for t in threading.enumerate()):
        threading.Thread(target=watch, name="rnn-sweep-parent-watchdog", daemon=True).start()


def guard_worker(sweep_dir: str | os.PathLike, sweep_pid: int | None = None) -> None:
    """In a sweep job: if this is a worker process, register it with the sweep lock and tie it to the sweep.

    ``sweep_pid``: the sweep process (default: what it left in ``RNN_SWEEP_SWEEP_PID``
    for its workers; unset means this process is the sweep).
    """
    if sweep_pid is None:
        sweep_pid = int(os.environ.get(SWEEP_PID_ENV, os.getpid()))
    if os.getpid() == sweep_pid:
        return  # in-process launcher: the sweep lock's holder is this process
    register_worker(sweep_dir)
    die_with_parent(sweep_pid)
    if os.getppid() == sweep_pid:
        # A direct child (joblib) shares the terminal: Ctrl-C is the sweep's to report. A
        # submitit worker's output goes to its own log, and a cancel reaches it as SIGINT:
        # it must stop then (releasing its run locks), so it keeps the default handler.
        ignore_interrupts()
    progress_bars_without_semaphores()
    logging.raiseExceptions = False  # as in the sweep process (rnn_sweep.launch.cli.main)


def progress_bars_without_semaphores() -> None:
    """Give tqdm a thread lock in a worker process, instead of the named semaphore it creates by default.

    tqdm's default lock includes a ``multiprocessing.RLock``: a named POSIX
    semaphore registered with Python's resource tracker. A worker that ends by
    SIGKILL (it dies with its sweep: a Ctrl-C or SIGTERM of a ``cores`` sweep)
    never unregisters it, and the tracker then warns about "leaked semaphore
    objects" on the user's terminal. A worker's bars never share a terminal
    line with another process's (they are off unless stderr is a terminal).
    """
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


def ignore_interrupts() -> None:
    """A worker ignores Ctrl-C (SIGINT, sent to the terminal's whole process group).

    The sweep process handles it: it stops the launcher, which ends its workers
    (they also die with it, :func:`die_with_parent`), and prints one line. A
    worker interrupted on its own would print its traceback in the middle of it.
    """
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass  # not the main thread of the worker: its launcher handles signals
