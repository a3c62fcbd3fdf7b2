"""One pack of sweep jobs as one unit of work: each member through Hydra's ``run_job``, one call to the core.

:func:`run_pack` is what a worker runs for a pack (in-process, in a joblib
worker, or as one Slurm job through submitit). Every member is handed to Hydra's
public :func:`hydra.core.utils.run_job`, so Hydra itself sets up the job (its
config and output directory, its job log, its ``.hydra`` records -- in an
rnn-sweep sweep ``<sweep dir>/.jobs/<run>/`` -- and the ``on_job_start`` /
``on_job_end`` callbacks) and makes its :class:`~hydra.core.utils.JobReturn`.
The members must still train as ONE call
(:func:`rnn_sweep.run.core.execute_pack`: plan, skip, lock, clear, train, record),
so the members' ``run_job`` calls are nested: member k's task enters member
k+1's ``run_job``, and the innermost task trains the pack. Every member's job
is therefore set up (records, log, ``on_job_start``) before anything trains,
and each member's task then returns its own run's result: its held-out loss,
or :class:`RunFailed` (Hydra's ``FAILED`` status) for a run that failed. Each
member's :class:`~rnn_sweep.run.core.RunOutcome` also travels back to the sweep
process on its JobReturn (attribute :data:`OUTCOME_ATTR`), which is how the
launcher reports it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from rnn_sweep.task.config import RunConfig, parse_bool
from rnn_sweep.run.core import DETAIL, Job, RunOutcome, execute_pack
from rnn_sweep.run.job import guard_worker

log = logging.getLogger("rnn_sweep.run.pack")
PACK_RECORD = "pack.json"  # beside Hydra's records of each member: which pack it trained in
OUTCOME_ATTR = "rnn_sweep_outcome"  # on each member's JobReturn: its RunOutcome (Hydra's JobReturn has no field)


class RunFailed(Exception):
    """A member's run failed or was refused: its task raises this, so Hydra marks its job FAILED."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__(outcome)  # args = (outcome,): pickles back from a worker whole
        self.outcome = outcome

    def __str__(self) -> str:
        return str(self.outcome.error)


@dataclass
class PackedJob:
    """A sweep job as the launcher hands it to a worker: its index, overrides and composed config."""

    idx: int
    overrides: list[str]
    config: DictConfig  # the composed sweep config, hydra node included (hydra.job.id/num set)
    run_cfg: RunConfig  # validated before anything ran (rnn_sweep.launch.hydra_glue.to_run_config)


def run_packs(packs: Sequence[Sequence[PackedJob]], callbacks: Any, task_function: TaskFunction,
              singleton_state: Optional[dict], labels: Sequence[str], launch: Optional[str] = None,
              ) -> list[list[JobReturn]]:
    """Run several packs one after the other in this worker (they share its compiled programs).

    ``launch``: the launch's id, written into each member's pack record as it
    finishes, which is how the sweep process follows the progress of packs that
    run in other processes (:class:`rnn_sweep.launch.workers.PackWatcher`).
    """
    return [run_pack(pack, callbacks, task_function, singleton_state, label, launch=launch)
            for pack, label in zip(packs, labels)]


def run_pack(jobs: Sequence[PackedJob], callbacks: Any, task_function: TaskFunction,
             singleton_state: Optional[dict] = None, label: str = "1/1", job_id: Optional[str] = None,
             launch: Optional[str] = None) -> list[JobReturn]:
    """Run one pack of rnn-sweep jobs; return their JobReturns in ``jobs`` order.

    Args:
        jobs: the pack's members (same pack key, see :func:`rnn_sweep.run.packing.pack_key`).
        callbacks: the sweep's Hydra callbacks (``hydra_context.callbacks``): only they
            travel to the workers, not the config loader (``run_job`` reads nothing else).
        task_function: the app's task function, passed to the job callbacks only.
        singleton_state: Hydra's singletons to restore in a fresh worker process (None in-process).
        label: ``"<pack number>/<packs>"`` for the log and the pack record.
        job_id: the scheduler's job id (submitit) for ``hydra.job.id``; None keeps the launcher's.
        launch: the launch's id for the pack records (see :func:`run_packs`).
    """
    if singleton_state is not None:
        setup_globals()
        Singleton.set_state(singleton_state)
    if jobs:
        guard_worker(str(OmegaConf.select(jobs[0].config, "hydra.sweep.dir")))
    if job_id is not None:
        for job in jobs:
            with open_dict(job.config):
                job.config.hydra.job.id = job_id
    chain = _Chain(list(jobs), HydraContext(config_loader=None, callbacks=callbacks), label, launch)
    chain.enter(0)
    return chain.returns


class _Chain:
    """The members' nested ``run_job`` calls; the innermost task trains the whole pack."""

    def __init__(self, jobs: list[PackedJob], context: HydraContext, label: str, launch: Optional[str]) -> None:
        self.jobs, self.context, self.label, self.launch = jobs, context, label, launch
        self.returns: list[JobReturn] = [JobReturn() for _ in jobs]
        self.outcomes: dict[int, RunOutcome] = {}
        self.problems: dict[int, str] = {}  # members Hydra could not set up (e.g. a full disk): they fail
        self.log_files: list[str] = []
        self.depth = 0  # members whose task has been entered
        # Each member's run directory, resolved once: resolving it is an OmegaConf interpolation
        # (~2 ms), and every member's pack record names them all (O(members^2) resolutions before).
        self.dirs = [job_output_dir(job.config) for job in jobs]

    def enter(self, i: int) -> None:
        """Member ``i``'s job through Hydra's ``run_job``, the later members inside its task."""
        if i == len(self.jobs):
            self.train()
            return
        job = self.jobs[i]
        try:
            ret = run_job(hydra_context=self.context, task_function=partial(self.member, i), config=job.config,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        except Exception as err:  # noqa: BLE001 -- Hydra could not set up this job (its records, its log)
            ret = self._not_set_up(i, err)
        if OUTCOME_ATTR not in vars(ret):  # its task never ran (a callback raised after it, the setup before)
            setattr(ret, OUTCOME_ATTR, self.outcomes.get(i) or RunOutcome(self.dirs[i], "failed",
                                                                             error=self.problems.get(i)))
        self.returns[i] = ret

    def _not_set_up(self, i: int, err: Exception) -> JobReturn:
        """A member Hydra could not set up fails alone; the members after it still train."""
        path = getattr(err, "filename", None) or "its job records"
        self.problems.setdefault(i, f"{self.dirs[i]}: cannot write {path}: "
                                    f"{getattr(err, 'strerror', None) or err}")
        if self.depth <= i:  # the chain broke before this member's task: go on with the next
            self.depth = i + 1
            self.enter(i + 1)
        outcome = self.outcomes.get(i) or RunOutcome(self.dirs[i], "failed",
                                                     error=self.problems[i])
        ret = JobReturn(overrides=list(self.jobs[i].overrides), status=JobStatus.FAILED,
                        _return_value=RunFailed(outcome))
        setattr(ret, OUTCOME_ATTR, outcome)
        return ret

    def member(self, i: int, task_cfg: DictConfig) -> float | None:
        """Member ``i``'s task: the later members, then this run's result (its held-out loss)."""
        self.depth = i + 1
        self.log_files += [h.baseFilename for h in logging.getLogger().handlers
                           if isinstance(h, logging.FileHandler)]
        self.enter(i + 1)
        job = self.jobs[i]
        outcome = self.outcomes.get(i) or RunOutcome(self.dirs[i], "failed",
                                                     error=self.problems.get(i, "its pack did not finish"))
        try:  # the later members' run_job configured their own job logs: this member's again
            configure_log(job.config.hydra.job_logging, job.config.hydra.verbose)
        except OSError:
            pass  # its job log cannot be opened (a full disk): the console and the failure list still say it
        with _console_quiet():
            log.info("%s", result_line(outcome), extra=DETAIL)
        self._pack_record(i, outcome)
        _flush_logs()
        setattr(self.returns[i], OUTCOME_ATTR, outcome)
        if outcome.error is not None:
            raise RunFailed(outcome)
        return outcome.heldout_loss

    def train(self) -> None:
        """The innermost task: every member whose job was set up trains, as ONE call to the core.

        While it runs, every member's job log gets its lines (the console only the
        ones not marked :data:`rnn_sweep.run.core.DETAIL`), under the last member's
        Hydra config and ``hydra.job.env_set``, which ``run_job`` has set.
        """
        from rnn_sweep.launch.hydra_glue import job_threads

        ready = [i for i in range(len(self.jobs)) if i not in self.problems]
        for i in self.problems:
            self.outcomes[i] = RunOutcome(self.dirs[i], "failed", error=self.problems[i])
        if not ready:
            return
        first = self.jobs[ready[0]]
        threads = job_threads(first.run_cfg.train.threads)
        # +force=true: a sweep option, not one of the run's
        jobs = [Job(self.jobs[i].run_cfg, Path(self.dirs[i]),
                    parse_bool("force", self.jobs[i].config.get("force", False))) for i in ready]
        with _log_to(self.log_files), _console_quiet():
            self.outcomes.update(zip(ready, execute_pack(jobs, threads, label=self.label)))

    def _pack_record(self, i: int, outcome: RunOutcome) -> None:
        records_dir = job_records_dir(self.jobs[i].config, self.dirs[i])
        if records_dir is None:
            return
        names = [Path(d).name for d in self.dirs]
        trained = [Path(o.run_dir).name for o in self.outcomes.values() if o.trained]
        record = {"pack": self.label, "size": len(names), "members": names, "trained": trained}
        if self.launch is not None:
            record.update(launch=self.launch, heldout_loss=outcome.heldout_loss, line=outcome.line())
        try:  # whole or not at all: the sweep process reads it
            write_text_atomic(records_dir / PACK_RECORD, json.dumps(record, indent=2) + "\n")
        except OSError as err:  # only progress reporting reads it; the run's own record is what counts
            log.warning("cannot write %s: %s", records_dir / PACK_RECORD, err.strerror or err)


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except OSError:
            pass  # a job log on a full disk: what it lost is reported on the console


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (temp file + rename); no temp file is left on an error."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def job_output_dir(config: DictConfig) -> str:
    """A sweep job's output (run) directory, absolute: ``hydra.sweep.dir``/``hydra.sweep.subdir``."""
    return os.path.abspath(os.path.join(str(OmegaConf.select(config, "hydra.sweep.dir")),
                                        str(OmegaConf.select(config, "hydra.sweep.subdir"))))


def job_records_dir(config: DictConfig, output_dir: Optional[str] = None) -> Optional[Path]:
    """Where a sweep job's Hydra records and pack record go (None: ``hydra.output_subdir=null``);
    ``output_dir``: its :func:`job_output_dir` when already known."""
    subdir = OmegaConf.select(config, "hydra.output_subdir")
    return None if subdir is None else Path(output_dir or job_output_dir(config)) / str(subdir)


def for_sweeper(ret: JobReturn) -> JobReturn:
    """The JobReturn handed back to Hydra's sweeper: a FAILED one as COMPLETED with no value.

    A failed run's job is FAILED where it ran (its ``on_job_end`` callbacks see
    that, as for any Hydra job), and the launcher has counted it. Hydra's
    sweepers raise on the first FAILED return they read, which ends the multirun
    before ``on_multirun_end``: the finished runs would not be aggregated and the
    sweep lock not released. rnn-sweep's contract is that a sweep finishes,
    aggregates what finished and then exits 1 listing what failed
    (:func:`rnn_sweep.launch.cli.main`), so this is the one place the status is
    translated. The original stays on the copy (``original``) for a sweeper
    that wants it.
    """
    if ret.status != JobStatus.FAILED:
        return ret
    out = dataclasses.replace(ret, status=JobStatus.COMPLETED, _return_value=None)
    setattr(out, OUTCOME_ATTR, outcome_of(ret))
    out.original = ret
    return out


def outcome_of(ret: JobReturn) -> RunOutcome:
    """How the run of a JobReturn made by :func:`rnn_sweep.launch.hydra_jobs.run_pack` ended."""
    return getattr(ret, OUTCOME_ATTR)


def result_line(outcome: RunOutcome) -> str:
    """The job log's line for a run: its status, losses at full precision, levels, what it learned."""
    if outcome.error is not None:
        return f"{outcome.status}: {outcome.error}"
    summary = outcome.summary or {}

    def num(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, (int, float)) else "nan"

    levels = " / ".join(f"{lv.get('name')} {num(lv.get('loss'))}" for lv in summary.get("levels") or [])
    return (f"{outcome.status}: final loss {num(summary.get('final_loss'))}, held-out "
            f"{num(summary.get('heldout_loss'))} (levels {levels}), learned {summary.get('learned_fraction')} "
            f"-> {outcome.run_dir}")


@contextmanager
def _log_to(files: list[str]) -> Iterator[None]:
    """While a pack trains, its log lines go to every member's job log, not only the last opened."""
    root = logging.getLogger()
    current = {h.baseFilename: h for h in root.handlers if isinstance(h, logging.FileHandler)}
    template = next(iter(current.values()), None)
    extra = []
    for path in dict.fromkeys(files):
        if path in current:
            continue
        try:
            handler = logging.FileHandler(path)
        except OSError:
            continue  # (a full disk) that member's log misses the pack's lines; its record says what happened
        if template is not None:
            handler.setFormatter(template.formatter)
            handler.setLevel(template.level)
        root.addHandler(handler)
        extra.append(handler)
    try:
        yield
    finally:
        for handler in extra:
            root.removeHandler(handler)
            try:
                handler.close()
            except OSError:
                pass  # its last lines could not be written (a full disk): nothing more to do


class _NotDetail(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "detail", False)


@contextmanager
def _console_quiet() -> Iterator[None]:
    """Lines marked :data:`rnn_sweep.run.core.DETAIL` go to the job logs only, not to the console.

    The console has one line per finished run, the sweep's progress line
    (:mod:`rnn_sweep.launch.progress`); the pack lines and the full-precision result
    line are for the job log.
    """
    keep_off = _NotDetail()
    handlers = [h for h in logging.getLogger().handlers if not isinstance(h, logging.FileHandler)]
    for handler in handlers:
        handler.addFilter(keep_off)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep_off)
