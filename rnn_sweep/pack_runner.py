"""One pack of sweep jobs as one unit of work: per-job Hydra records, one training call.

:func:`run_pack` is what a worker runs for a pack (in-process, in a joblib
worker, or as one Slurm job through submitit). For every member it does what
Hydra's ``run_job`` does for a job -- the job's config and output directory,
its job log, its records (``.hydra`` files; in an rnn-sweep sweep
``<sweep dir>/.jobs/<run>/``), the ``on_job_start`` / ``on_job_end`` callbacks,
a :class:`~hydra.core.utils.JobReturn` -- except that the members' training is
one call: :func:`train_members`. Resume and failures stay per run: a finished
member is skipped (:func:`rnn_sweep.sweep.plan`), only unfinished ones train, and
a member that fails is recorded in its own ``summary.json`` and in the sweep's
failure list (:func:`rnn_sweep.cli.record_failure`) without touching the others.
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

from rnn_sweep.config import RunConfig

log = logging.getLogger("rnn_sweep.pack")
PACK_RECORD = "pack.json"  # beside Hydra's records of each member: which pack it trained in
# On each member's JobReturn: (exit code, message) of its failure, or None. The sweep process
# reads it (rnn_sweep.launcher), so a failure counts even where .failures could not be written.
FAILURE_ATTR = "rnn_sweep_failure"


@dataclass
class PackedJob:
    """A sweep job as the launcher hands it to a worker: its index, overrides and composed config."""

    idx: int
    overrides: list[str]
    config: DictConfig  # the composed sweep config, hydra node included (hydra.job.id/num set)
    run_cfg: RunConfig  # validated before anything ran (rnn_sweep.cli.to_run_config)


@dataclass
class Outcome:
    """What became of a member: its summary, or the one-line error recorded for it."""

    summary: Optional[dict] = None
    error: Optional[str] = None
    trained: bool = False
    code: int = 1  # the exit status an error means (rnn_sweep.failures): 2 refused, 1 failed


@dataclass
class _Member:
    job: PackedJob
    ret: JobReturn
    run_dir: Path
    records_dir: Optional[Path]
    log_files: list[str] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    must_train: bool = False
    lock: Any = None  # the run lock this member holds while it trains (rnn_sweep.sweep.lock_unless_finished)


def run_packs(packs: Sequence[Sequence[PackedJob]], callbacks: Any, task_function: TaskFunction,
              singleton_state: Optional[dict], labels: Sequence[str], launch: Optional[str] = None,
              ) -> list[list[JobReturn]]:
    """Run several packs one after the other in this worker (they share its compiled programs).

    ``launch``: the launch's id, written into each member's pack record as it
    finishes, which is how the sweep process follows the progress of packs that
    run in other processes (:class:`rnn_sweep.launcher.PackWatcher`).
    """
    return [run_pack(pack, callbacks, task_function, singleton_state, label, launch=launch)
            for pack, label in zip(packs, labels)]


def run_pack(jobs: Sequence[PackedJob], callbacks: Any, task_function: TaskFunction,
             singleton_state: Optional[dict] = None, label: str = "1/1", job_id: Optional[str] = None,
             launch: Optional[str] = None) -> list[JobReturn]:
    """Run one pack of rnn-sweep jobs; return their JobReturns in ``jobs`` order.

    Args:
        jobs: the pack's members (same pack key, see :func:`rnn_sweep.packing.pack_key`).
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
        _guard_worker(jobs[0].config)
    original = HydraConfig.instance().cfg
    members: list[_Member] = []
    try:
        for job in jobs:
            members.append(_open(job, callbacks, task_function, job_id))
        todo = [m for m in members if m.must_train]
        if todo:
            _train(todo, members, label)
        for m in members:
            _close(m, members, label, callbacks, launch)
        return [m.ret for m in members]
    finally:
        for m in members:  # also when interrupted: a live lock of this process would block the rerun
            if m.lock is not None:
                m.lock.release()
        HydraConfig.instance().cfg = original


def _guard_worker(config: DictConfig) -> None:
    """In a worker process: die with the sweep and hold its lock while alive (issue 11: kill -9)."""
    from rnn_sweep.cli import SWEEP_PID_ENV
    from rnn_sweep.sweep import guard_worker

    guard_worker(str(OmegaConf.select(config, "hydra.sweep.dir")), int(os.environ.get(SWEEP_PID_ENV, os.getpid())))


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
    member = _Member(job, ret, Path(config.hydra.runtime.output_dir), records_dir, log_files)
    if problem is not None:  # e.g. a full disk: this job fails, the others (and later packs) go on
        member.outcome = Outcome(error=f"{member.run_dir}: {problem}")
        return member
    member.must_train = _decide(member)  # while this job's config and log are the current ones
    return member


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


def _decide(m: _Member) -> bool:
    """Plan a member: True when it must train; a skip or a refusal is settled here."""
    from rnn_sweep import failures
    from rnn_sweep.config import parse_bool
    from rnn_sweep.sweep import clear_partial, lock_unless_finished, plan, run_job

    force = parse_bool("force", m.ret.cfg.get("force", False))  # +force=true: a sweep option, not of the run
    try:
        m.lock = lock_unless_finished(m.job.run_cfg, m.run_dir, force)
        if m.lock is None or plan(m.job.run_cfg, m.run_dir, force) == "skip":  # (finished meanwhile)
            m.outcome = Outcome(summary=run_job(m.job.run_cfg, m.run_dir))  # logs "skipping ..." as before
            return False
        removed = clear_partial(m.run_dir)
    except Exception as err:  # noqa: BLE001 -- one member's problem never stops the pack
        code = failures.exit_code(err)  # 2: another config's finished run, a live lock, foreign files
        text = str(err) if code == failures.BAD_INPUT and str(m.run_dir) in str(err) else \
            f"{m.run_dir}: {failures.message(err) if code == failures.BAD_INPUT else f'{type(err).__name__}: {err}'}"
        m.outcome = Outcome(error=text, code=code)
        return False
    if removed:
        log.info("retraining %s from scratch (removed %s)", m.run_dir, ", ".join(removed))
    return True


def _train(todo: list[_Member], members: list[_Member], label: str) -> None:
    """Train the unfinished members as one call; every member's job log gets the pack's lines."""
    from rnn_sweep.cli import job_threads

    HydraConfig.instance().cfg = todo[0].ret.hydra_cfg
    threads = job_threads(todo[0].job.run_cfg.train.threads)
    env = dict(OmegaConf.to_container(todo[0].job.config.hydra.job.env_set, resolve=True) or {})
    log_files = [f for m in members for f in m.log_files]
    with _env(env), _log_to(log_files):
        log.info("pack %s: training %d of %d run(s) as one program: %s", label, len(todo), len(members),
                 "; ".join(m.run_dir.name for m in todo))
        outcomes = train_members([m.job.run_cfg for m in todo], [m.run_dir for m in todo], threads)
    for m, outcome in zip(todo, outcomes):
        m.outcome = outcome


def train_members(cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], threads: int = 0) -> list[Outcome]:
    """Train runs that share a pack key, each into its own (cleared) run directory.

    With ``rnn_sweep.train.train_pack`` (one compiled program for the pack) when
    it is there, else one after the other in this process with
    :func:`rnn_sweep.sweep.run_job` (later runs reuse the first one's compiled
    program). Either way each run ends with its own ``summary.json`` (status
    completed, diverged or failed). When the pack as a whole cannot train, its
    runs are retried one by one, so one bad run never costs the others.
    """
    from rnn_sweep import train as train_mod
    from rnn_sweep.packing import packable
    from rnn_sweep.sweep import prepare_worker

    train_pack = getattr(train_mod, "train_pack", None)
    if train_pack is not None and all(packable(c) for c in cfgs):
        try:
            prepare_worker(cfgs[0].seed, threads, cfgs[0].model.backend)
            summaries = list(train_pack(list(cfgs), [Path(d) for d in run_dirs], threads=threads))
            return [_from_summary(s, d) for s, d in zip(summaries, run_dirs)]
        except Exception as err:  # noqa: BLE001 -- retried run by run below
            log.warning("the pack could not train as one program (%s: %s); training its %d run(s) one by one",
                        type(err).__name__, err, len(cfgs))
    return [_train_one(cfg, Path(d), threads) for cfg, d in zip(cfgs, run_dirs)]


def _from_summary(summary: dict, run_dir: Path) -> Outcome:
    if summary.get("status") == "failed":
        return Outcome(summary, f"{run_dir}: {summary.get('error')} (recorded in summary.json)", trained=True)
    return Outcome(summary, trained=True)


def _train_one(cfg: RunConfig, run_dir: Path, threads: int) -> Outcome:
    from rnn_sweep.sweep import RunFailed, run_job

    try:
        return Outcome(run_job(cfg, run_dir, threads=threads), trained=True)
    except RunFailed as err:
        return Outcome(error=str(err), trained=True)
    except Exception as err:  # noqa: BLE001 -- e.g. an unwritable run directory: this run's failure only
        return Outcome(error=f"{run_dir}: {type(err).__name__}: {err}", trained=True)


def _close(m: _Member, members: list[_Member], label: str, callbacks: Any, launch: Optional[str] = None) -> None:
    """Hydra's ``run_job`` after the task: result line, failure record, pack record, ``on_job_end``."""
    from rnn_sweep.cli import record_failure

    config = m.job.config
    HydraConfig.instance().cfg = m.ret.hydra_cfg  # this member's, as _open set it (no second copy)
    try:
        configure_log(config.hydra.job_logging, config.hydra.verbose)
    except OSError:
        pass  # its job log cannot be opened (a full disk): the console and the failure list still say it
    if m.outcome.error is not None:
        record_failure(m.outcome.error, m.outcome.code)
        m.ret.return_value = None
    else:
        log.info("%s", result_line(m.outcome.summary or {}, m.run_dir))
        m.ret.return_value = (m.outcome.summary or {}).get("heldout_loss")
    m.ret.status = JobStatus.COMPLETED  # failures are records, not exceptions (see rnn_sweep.cli.record_failure)
    m.ret.task_name = JobRuntime.instance().get("name")
    setattr(m.ret, FAILURE_ATTR, (m.outcome.code, m.outcome.error) if m.outcome.error is not None else None)
    if m.lock is not None:  # the record is written: the directory is free again
        m.lock.release()
        m.lock = None
    if m.records_dir is not None:
        record = {"pack": label, "size": len(members), "members": [o.run_dir.name for o in members],
                  "trained": [o.run_dir.name for o in members if o.outcome.trained]}
        if launch is not None:
            record.update(launch=launch, heldout_loss=m.ret.return_value)
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


def result_line(summary: dict, run_dir: Path) -> str:
    """The log line of a finished run: status, losses, levels and what it learned."""
    def num(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, (int, float)) else "nan"

    levels = " / ".join(f"{lv.get('name')} {num(lv.get('loss'))}" for lv in summary.get("levels") or [])
    return (f"{summary.get('status')}: final loss {num(summary.get('final_loss'))}, held-out "
            f"{num(summary.get('heldout_loss'))} (levels {levels}), learned {summary.get('learned_fraction')} "
            f"-> {run_dir}")


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
