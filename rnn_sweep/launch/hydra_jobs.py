"""One pack of sweep jobs as one unit of work: per-job Hydra records, one call to the core.

:func:`run_pack` is what a worker runs for a pack (in-process, in a joblib
worker, or as one Slurm job through submitit). For every member it does what
Hydra's ``run_job`` does for a job -- the job's config and output directory,
its job log, its records (``.hydra`` files; in an rnn-sweep sweep
``<sweep dir>/.jobs/<run>/``), the ``on_job_start`` / ``on_job_end`` callbacks,
a :class:`~hydra.core.utils.JobReturn` -- except that the members execute as
one call: :func:`rnn_sweep.run.core.execute_pack` (plan, skip, lock, clear, train,
record). Each member's :class:`~rnn_sweep.run.core.RunOutcome` travels back to the
sweep process on its JobReturn (attribute :data:`OUTCOME_ATTR`), which is how
the launcher reports it and counts its failure.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, setup_globals
from hydra.types import TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from rnn_sweep.task.config import RunConfig, parse_bool
from rnn_sweep.run.core import DETAIL, Job, RunOutcome, execute_pack
from rnn_sweep.run.job import guard_worker

log = logging.getLogger("rnn_sweep.run.pack")
PACK_RECORD = "pack.json"  # beside Hydra's records of each member: which pack it trained in
# On each member's JobReturn: its RunOutcome. Hydra's JobReturn has no field for it; the
# status stays COMPLETED (a FAILED one makes Hydra's sweeper raise and skip on_multirun_end:
# no aggregation, no lock release), and the sweep process reads the outcome from here.
OUTCOME_ATTR = "rnn_sweep_outcome"


@dataclass
class PackedJob:
    """A sweep job as the launcher hands it to a worker: its index, overrides and composed config."""

    idx: int
    overrides: list[str]
    config: DictConfig  # the composed sweep config, hydra node included (hydra.job.id/num set)
    run_cfg: RunConfig  # validated before anything ran (rnn_sweep.launch.hydra_glue.to_run_config)


@dataclass
class _Member:
    """Hydra's side of a member: its JobReturn, directories, job log, and a records problem."""

    job: PackedJob
    ret: JobReturn
    run_dir: Path
    records_dir: Optional[Path]
    log_files: list[str] = field(default_factory=list)
    problem: Optional[str] = None  # its Hydra records could not be written: it fails, the others go on


def run_packs(packs: Sequence[Sequence[PackedJob]], callbacks: Any, task_function: TaskFunction,
              singleton_state: Optional[dict], labels: Sequence[str], launch: Optional[str] = None,
              ) -> list[list[JobReturn]]:
    """Run several packs one after the other in this worker (they share its compiled programs).

    ``launch``: the launch's id, written into each member's pack record as it
    finishes, which is how the sweep process follows the progress of packs that
    run in other processes (:class:`rnn_sweep.launch.launcher.PackWatcher`).
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
            travel to the workers, not the config loader.
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
    original = HydraConfig.instance().cfg
    try:
        members = [_open(job, callbacks, task_function, job_id) for job in jobs]
        outcomes = _execute(members, label)
        trained = [m.run_dir.name for m, o in zip(members, outcomes) if o.trained]
        for m, outcome in zip(members, outcomes):
            _close(m, outcome, [o.run_dir.name for o in members], trained, label, callbacks, launch)
        return [m.ret for m in members]
    finally:
        HydraConfig.instance().cfg = original


def _open(job: PackedJob, callbacks: Any, task_function: TaskFunction, job_id: Optional[str]) -> _Member:
    """Hydra's ``run_job`` up to the task call: output dir, job log, records, ``on_job_start``."""
    config = job.config
    if job_id is not None:
        with open_dict(config):
            config.hydra.job.id = job_id
    HydraConfig.instance().set_config(config)
    output_dir = job_output_dir(config)
    # Hydra's run_job sets the output dir and calls set_config again, which copies the whole
    # hydra node a second time; setting it in both places leaves the same state, copied once.
    hydra_cfg = HydraConfig.instance().cfg
    for node in (config.hydra.runtime, hydra_cfg.hydra.runtime):
        with read_write(node), open_dict(node):
            node.output_dir = output_dir
    ret = JobReturn()
    # The job's config without its hydra node; Hydra deep-copies all of it, then drops hydra.
    task_cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    OmegaConf.set_struct(task_cfg, OmegaConf.is_struct(config))
    ret.cfg = task_cfg
    ret.hydra_cfg = hydra_cfg  # a fresh copy per job (set_config); never changed after this
    ret.overrides = OmegaConf.to_container(config.hydra.overrides.task)
    ret.working_dir = os.getcwd()  # rnn-sweep runs never chdir: run directories are absolute
    records_dir = job_records_dir(config)
    try:
        configure_log(config.hydra.job_logging, config.hydra.verbose)  # opens the job log
        problem = _write_hydra_records(records_dir, task_cfg, ret.hydra_cfg, config.hydra.overrides.task)
    except OSError as err:
        problem = f"cannot write {err.filename or 'its job log'}: {err.strerror or err}"
    log_files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    callbacks.on_job_start(config=config, task_function=task_function)
    run_dir = Path(config.hydra.runtime.output_dir)
    # e.g. a full disk: this job fails, the others (and later packs) go on
    return _Member(job, ret, run_dir, records_dir, log_files, None if problem is None else f"{run_dir}: {problem}")


def _write_hydra_records(records_dir: Optional[Path], task_cfg: DictConfig, hydra_cfg: DictConfig,
                         overrides: Any) -> Optional[str]:
    """Hydra's ``.hydra`` files of a job; on a write error the reason naming the path (nothing half-written)."""
    if records_dir is None:
        return None
    path = records_dir
    try:
        records_dir.mkdir(parents=True, exist_ok=True)
        for name, node in (("config.yaml", task_cfg), ("hydra.yaml", hydra_cfg), ("overrides.yaml", overrides)):
            path = records_dir / name
            write_text_atomic(path, OmegaConf.to_yaml(node))
    except OSError as err:
        return f"cannot write {path}: {err.strerror or err}"
    return None


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


def job_records_dir(config: DictConfig) -> Optional[Path]:
    """Where a sweep job's Hydra records and pack record go (None: ``hydra.output_subdir=null``)."""
    subdir = OmegaConf.select(config, "hydra.output_subdir")
    return None if subdir is None else Path(job_output_dir(config)) / str(subdir)


def _execute(members: list[_Member], label: str) -> list[RunOutcome]:
    """The members' outcomes: one :func:`rnn_sweep.run.core.execute_pack` call for those whose records were written.

    While it runs, every member's job log gets its lines (the console only the
    ones not marked :data:`rnn_sweep.run.core.DETAIL`), under the first member's
    ``hydra.job.env_set`` and Hydra config, as Hydra sets them around a task.
    """
    from rnn_sweep.launch.hydra_glue import job_threads

    ready = [m for m in members if m.problem is None]
    done: dict[int, RunOutcome] = {id(m): RunOutcome(str(m.run_dir), "failed", error=m.problem)
                                   for m in members if m.problem is not None}
    if ready:
        HydraConfig.instance().cfg = ready[0].ret.hydra_cfg
        threads = job_threads(ready[0].job.run_cfg.train.threads)
        env = dict(OmegaConf.to_container(ready[0].job.config.hydra.job.env_set, resolve=True) or {})
        # +force=true: a sweep option, not one of the run's
        jobs = [Job(m.job.run_cfg, m.run_dir, parse_bool("force", m.ret.cfg.get("force", False))) for m in ready]
        with _env(env), _log_to([f for m in members for f in m.log_files]), _console_quiet():
            done.update(zip(map(id, ready), execute_pack(jobs, threads, label=label)))
    return [done[id(m)] for m in members]


def _close(m: _Member, outcome: RunOutcome, names: list[str], trained: list[str], label: str, callbacks: Any,
           launch: Optional[str] = None) -> None:
    """Hydra's ``run_job`` after the task: the detail in the job log, pack record, ``on_job_end``."""
    config = m.job.config
    HydraConfig.instance().cfg = m.ret.hydra_cfg  # this member's, as _open set it (no second copy)
    try:
        configure_log(config.hydra.job_logging, config.hydra.verbose)
    except OSError:
        pass  # its job log cannot be opened (a full disk): the console and the failure list still say it
    with _console_quiet():
        log.info("%s", result_line(outcome), extra=DETAIL)
    m.ret.return_value = outcome.heldout_loss
    m.ret.status = JobStatus.COMPLETED  # how the run ended is its outcome (see OUTCOME_ATTR)
    m.ret.task_name = JobRuntime.instance().get("name")
    setattr(m.ret, OUTCOME_ATTR, outcome)
    if m.records_dir is not None:
        record = {"pack": label, "size": len(names), "members": names, "trained": trained}
        if launch is not None:
            record.update(launch=launch, heldout_loss=outcome.heldout_loss, line=outcome.line())
        try:  # whole or not at all: the sweep process reads it
            write_text_atomic(m.records_dir / PACK_RECORD, json.dumps(record, indent=2) + "\n")
        except OSError as err:  # only progress reporting reads it; the run's own record is what counts
            log.warning("cannot write %s: %s", m.records_dir / PACK_RECORD, err.strerror or err)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except OSError:
            pass  # a job log on a full disk: what it lost is reported on the console
    callbacks.on_job_end(config=config, job_return=m.ret)


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
def _env(env: dict) -> Iterator[None]:
    """The job's ``hydra.job.env_set`` around its training, as Hydra sets it around a task."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
