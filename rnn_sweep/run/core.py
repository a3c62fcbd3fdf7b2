"""The execution core: run a pack of jobs and say how each run ended, with no Hydra.

:func:`execute_pack` is the one function every path trains through: a single
run (``rnn-sweep KEY=VALUE``), a sweep job of Hydra's own launchers (both
through :func:`rnn_sweep.launch.cli.run`), and each pack of rnn-sweep's packing
launcher, in process, on joblib workers or as a submitit (Slurm) job
(:mod:`rnn_sweep.launch.hydra_jobs`). For each job it plans (skip a finished run of
the same config; refuse one of another config unless ``force``), takes the
run lock, clears what an unfinished run left, trains the members that need it
as one :func:`rnn_sweep.run.train.train_pack` call (run by run when the pack cannot
train as one, so one bad run never costs the others), records a training error
in the run's ``summary.json`` and releases the locks.

How a run ended has one shape, :class:`RunOutcome`; the console line, the
held-out loss a launcher reports and the exit status are derived from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from rnn_sweep.run import records
from rnn_sweep.task.config import ConfigError, RunConfig
from rnn_sweep.run.locks import DirLock, Locked
from rnn_sweep.run.job import SWEEP_JOB_HINT, ConfigMismatch, clear_partial, plan, prepare_worker, read_summary, \
    run_lock

log = logging.getLogger("rnn_sweep.run.core")
STATUSES = ("completed", "diverged", "failed", "refused", "skipped")
REFUSED_CODE, FAILED_CODE = 2, 1  # rnn_sweep.launch.failures' BAD_INPUT and RUN_FAILED (that module imports Hydra)
# Marks a log line for the job log only (rnn_sweep.launch.hydra_jobs keeps it off the console there).
DETAIL = {"detail": True}
# A problem with the input or a directory in the way: nothing was trained, exit status 2.
REFUSALS = (ConfigMismatch, Locked, records.UnsafeDirectory, ConfigError)


@dataclass(frozen=True)
class Job:
    """One run to execute: its validated config, its directory and how to treat what is there.

    ``locked``: the caller already holds the run's lock (a single run holds it
    from before Hydra creates the directory), so :func:`execute_pack` takes none.
    """

    cfg: RunConfig
    run_dir: Path
    force: bool = False
    locked: bool = False


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended: ``completed``, ``diverged`` or ``failed`` (it trained or tried to),
    ``skipped`` (finished before with the same config) or ``refused`` (nothing was done).

    Attributes:
        run_dir: the run's directory.
        status: one of :data:`STATUSES`.
        summary: the run's summary (its summary.json, or the combined one of a
            ``train.replicas`` run); None where there is none.
        error: one line saying why, for ``failed`` and ``refused``; else None.
        trained: whether this execution trained the run (or tried to).
    """

    run_dir: str
    status: str
    summary: Optional[dict] = None
    error: Optional[str] = None
    trained: bool = False

    @property
    def exit_code(self) -> int:
        """This run's share of the command's exit status: 2 refused, 1 failed, else 0."""
        return {"refused": REFUSED_CODE, "failed": FAILED_CODE}.get(self.status, 0)

    @property
    def heldout_loss(self) -> Optional[float]:
        """The held-out loss (None without one: failed, refused, diverged)."""
        value = (self.summary or {}).get("heldout_loss")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def name(self) -> str:
        return Path(self.run_dir).name

    def line(self) -> str:
        """The one console line of a finished run, numbers rounded, e.g.
        ``seed=0: completed, held-out 0.5210 (none 0.6616 / lag 3 0.5192 / lags 3+8 0.4545), learned lag 3 0.98``."""
        if self.error is not None:
            return f"{self.name}: {self.status}: {self.error}"
        summary = self.summary or {}
        head = self.status if self.status != "skipped" else f"skipped (already {summary.get('status', 'finished')})"
        parts = [head]
        if summary.get("status") == "diverged" and summary.get("diverged_at_step") is not None:
            parts[0] += f" at step {summary['diverged_at_step']}"
        if self.heldout_loss is not None:
            levels = " / ".join(f"{lv.get('name')} {_num(lv.get('loss'))}" for lv in summary.get("levels") or [])
            parts.append(f"held-out {self.heldout_loss:.4f}" + (f" ({levels})" if levels else ""))
        learned = summary.get("learned_fraction") or {}
        if learned:
            parts.append("learned " + ", ".join(f"lag {lag} {_num(v, 2)}" for lag, v in learned.items()))
        return f"{self.name}: " + ", ".join(parts)


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces collapsed."""
    return " ".join(str(text).split())


def refusal_text(err: BaseException, run_dir: Path | str) -> str:
    """One line for an error about ``run_dir``, naming it (once) and, for a failure, the error type."""
    text = one_line(str(err)) or type(err).__name__
    if not isinstance(err, REFUSALS):
        text = f"{type(err).__name__}: {text}"
    return text if str(run_dir) in text else f"{run_dir}: {text}"


def execute_pack(jobs: Sequence[Job], threads: int = 0, label: Optional[str] = None) -> list[RunOutcome]:
    """Execute jobs that may share one compiled program; one outcome per job, in order.

    Args:
        jobs: runs with equal :func:`rnn_sweep.run.packing.pack_key` (a single run is a pack of one).
        threads: TensorFlow intra-op threads (0: the runs' ``train.threads`` or TF's default).
        label: the pack's name for the log line (``"3/28"``); None logs no pack line.

    Returns:
        A :class:`RunOutcome` per job. Nothing raises for one job's problem: a
        refusal or failure is that job's outcome; only an interrupt
        (KeyboardInterrupt) stops the pack, its locks released.
    """
    outcomes: list[Optional[RunOutcome]] = [None] * len(jobs)
    locks: list[DirLock] = []
    try:
        todo = []
        for k, job in enumerate(jobs):
            outcomes[k] = _prepare(job, locks)
            if outcomes[k] is None:
                todo.append(k)
        if todo:
            if label is not None:
                log.info("pack %s: training %d of %d run(s) as one program: %s", label, len(todo), len(jobs),
                         "; ".join(Path(jobs[k].run_dir).name for k in todo), extra=DETAIL)
            for k, outcome in zip(todo, train_jobs([jobs[k] for k in todo], threads)):
                outcomes[k] = outcome
        return [o for o in outcomes if o is not None]
    finally:
        for lock in locks:  # also when interrupted: a lock of this live process would block the rerun
            lock.release()


def _prepare(job: Job, locks: list[DirLock]) -> Optional[RunOutcome]:
    """Plan, lock and clear one job: its outcome when it must not train (skip, refusal), else None."""
    run_dir = Path(job.run_dir)
    try:
        seen = _records(run_dir)
        if plan(job.cfg, run_dir, job.force) == "skip":
            # A skipped job only reads its record, so it takes no lock: a finished run
            # directory stays untouched, its mtime included.
            return _skipped(job)
        if not job.locked:
            lock = run_lock(run_dir, SWEEP_JOB_HINT)
            lock.acquire()
            locks.append(lock)
            # Planned again only if another process wrote a record before the lock was ours.
            if _records(run_dir) != seen and plan(job.cfg, run_dir, job.force) == "skip":
                return _skipped(job)
        removed = clear_partial(run_dir)
    except Exception as err:  # noqa: BLE001 -- one job's problem never stops the others
        status = "refused" if isinstance(err, REFUSALS) else "failed"
        return RunOutcome(str(run_dir), status, error=refusal_text(err, run_dir))
    if removed:
        log.info("retraining %s from scratch (removed %s)", run_dir, ", ".join(removed))
    return None


def _records(run_dir: Path) -> list[tuple[str, int, int]]:
    """The run's summary.json files (a replicated run's per seed too) with their mtime and size."""
    try:
        found = [run_dir / records.SUMMARY_FILE, *run_dir.glob(f"seed=*/{records.SUMMARY_FILE}")]
        return [(str(p), st.st_mtime_ns, st.st_size) for p in found if p.exists() for st in [p.stat()]]
    except OSError:
        return [("?", 0, 0)]  # unreadable: plan again under the lock


def _skipped(job: Job) -> RunOutcome:
    log.info("skipping %s: already finished with the same config", job.run_dir)
    if job.cfg.train.replicas > 1:
        from rnn_sweep.run.train import combined_summary, replica_dir, replica_seeds

        summary = combined_summary([read_summary(replica_dir(job.run_dir, s)) for s in replica_seeds(job.cfg)])
    else:
        summary = read_summary(Path(job.run_dir))
    return RunOutcome(str(job.run_dir), "skipped", summary)


def train_jobs(jobs: Sequence[Job], threads: int = 0) -> list[RunOutcome]:
    """Train planned, locked and cleared jobs: as one pack when there are several, else alone.

    :func:`rnn_sweep.run.train.train_pack` trains a pack as one compiled program;
    when it cannot (it raised as a whole), the runs are trained one by one
    (later ones reuse the first one's compiled program), so one bad run never
    costs the others. Either way each run ends with its own ``summary.json``.
    """
    from rnn_sweep.run import train as train_mod
    from rnn_sweep.run.packing import packable

    cfgs = [job.cfg for job in jobs]
    if len(jobs) > 1 and all(packable(c) for c in cfgs):
        try:
            prepare_worker(cfgs[0].seed, threads, cfgs[0].model.backend)
            summaries = train_mod.train_pack(cfgs, [Path(job.run_dir) for job in jobs], threads=threads)
            return [_trained(s, job.run_dir) for s, job in zip(summaries, jobs)]
        except Exception as err:  # noqa: BLE001 -- retried run by run below
            log.warning("the pack could not train as one program (%s: %s); training its %d run(s) one by one",
                        type(err).__name__, err, len(jobs))
    return [train_one(job, threads) for job in jobs]


def _trained(summary: dict, run_dir: Path | str) -> RunOutcome:
    status = summary.get("status") if summary.get("status") in STATUSES else "failed"
    if status == "failed":
        error = f"{run_dir}: {summary.get('error')} (recorded in summary.json)"
        return RunOutcome(str(run_dir), "failed", summary, error, trained=True)
    return RunOutcome(str(run_dir), status, summary, trained=True)


def train_one(job: Job, threads: int = 0) -> RunOutcome:
    """Train one job alone; a training error becomes its ``failed`` record (written by
    :func:`rnn_sweep.run.train.failed_summary`'s schema) and its outcome."""
    from rnn_sweep.run import train as train_mod

    run_dir = Path(job.run_dir)
    try:
        prepare_worker(job.cfg.seed, threads, job.cfg.model.backend)
        return _trained(train_mod.train(job.cfg, run_dir), run_dir)
    except Exception as err:  # noqa: BLE001 -- any training error becomes a recorded failure
        log.exception("run %s failed", run_dir, extra=DETAIL)  # its one line says why; the trace is for the log
        what = f"{type(err).__name__}: {one_line(str(err))}"
        summary = None
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            summary = train_mod.failed_summary(job.cfg, run_dir, err)
            records.write_json_atomic(run_dir / records.SUMMARY_FILE, summary)
            error = f"{run_dir}: {what} (recorded in summary.json)"
        except OSError as record_err:  # e.g. the disk is full: the run stays unfinished, a rerun retrains it
            summary = None
            error = (f"{run_dir}: {what} (and its failure record could not be written either: "
                     f"{record_err.strerror or record_err})")
        return RunOutcome(str(run_dir), "failed", summary, error, trained=True)


def exit_code(outcomes: Sequence[RunOutcome]) -> int:
    """The exit status of several runs: the highest of theirs (2 refused, 1 failed, 0 otherwise)."""
    return max((o.exit_code for o in outcomes), default=0)

