"""The Hydra side of ``rnn-sweep``: resolvers, the sweep-lock callback, composed config -> RunConfig.

Everything here knows Hydra; nothing here trains (:mod:`rnn_sweep.run.core` does).

* The resolvers used in ``conf/config.yaml``: a sweep's directory name
  (``rnn_sweep_name``), a job's run directory name (``rnn_sweep_subdir``) and
  where Hydra's per-job records go (``rnn_sweep_meta``).
* :class:`SweepLockCallback` checks and locks the run or sweep directory before
  any work.
* :func:`to_run_config` turns a composed ``DictConfig`` into a validated
  :class:`~rnn_sweep.task.config.RunConfig` before TensorFlow is imported.
* :func:`finish_job` turns a run's :class:`~rnn_sweep.run.core.RunOutcome` into
  what Hydra's task returns, a log line, and (for a failed sweep job of Hydra's
  own launchers) a line in ``<sweep dir>/.failures``.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import sys
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnn_sweep.launch import failures
from rnn_sweep.run import records
from rnn_sweep.task.config import ConfigError, RunConfig, from_dict, parse_bool, validate
from rnn_sweep.run.core import RunOutcome
from rnn_sweep.run.locks import Locked
from rnn_sweep.run.job import SWEEP_PID_ENV, SweepLock, run_lock

log = logging.getLogger("rnn_sweep")
ConfigStore.instance().store(name="rnn_sweep_schema", node=RunConfig)
NO_EXPERIMENT = "adhoc"  # sweep directory name of a command-line sweep without experiment=
NAME_MAX = 255  # bytes per path component on Linux/macOS file systems
# Run directories of this process's sweep jobs, and whether each existed before
# Hydra created it: only a directory this launch created may be removed again.
_EXISTED_BEFORE: dict[str, bool] = {}
FAILURES_FILE = records.FAILURES_FILE


def _sweep_name(choice) -> str:
    return NO_EXPERIMENT if choice in (None, "None", "null", "") else str(choice)


def _meta_dir(mode, run_value: str, *, _root_) -> str:
    """Where Hydra's per-job records go: ``run_value`` in a single run, else outside the run dir."""
    if getattr(mode, "name", str(mode)) != "MULTIRUN":
        return run_value
    sweep = _root_.hydra.sweep
    meta = Path(sweep.dir).absolute() / records.JOBS_DIR / str(sweep.subdir)
    meta.mkdir(parents=True, exist_ok=True)  # Hydra opens the job log before creating .hydra
    return str(meta)


def short_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` if it fits one path component, else a readable prefix + ``~`` + a hash of all of it.

    Deterministic, so a resumed sweep finds the same directory; the prefix ends
    at an override boundary (``,``) where it can.
    """
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    room = limit - len(digest) - 1
    prefix = name.encode()[:room].decode(errors="ignore")
    if "," in prefix:
        prefix = prefix[:prefix.rindex(",")]
    return f"{prefix}~{digest}"


def _run_subdir(override_dirname, *, _root_=None) -> str:
    """A sweep job's directory name: its overrides (shortened past 255 bytes), or ``base`` without any.

    Hydra resolves this just before it creates the job's directory; noting
    whether the directory existed then lets an invalid job remove what its
    launch created, and nothing else.
    """
    name = short_name(str(override_dirname) or "base")
    if _root_ is not None:
        path = os.path.abspath(os.path.join(str(_root_.hydra.sweep.dir), name))
        _EXISTED_BEFORE.setdefault(path, os.path.exists(path))
    return name


OmegaConf.register_new_resolver("rnn_sweep_name", _sweep_name, replace=True)
OmegaConf.register_new_resolver("rnn_sweep_subdir", _run_subdir, replace=True)
OmegaConf.register_new_resolver("rnn_sweep_meta", _meta_dir, replace=True)


def record_failure(message: str, code: int = failures.RUN_FAILED) -> None:
    """Note a failed job of one of Hydra's own launchers in ``<sweep dir>/.failures``.

    Only jobs that run :func:`rnn_sweep.launch.cli.run` as their task (hydra/launcher=basic,
    Hydra's joblib or Ray launcher without packing) come here. Such a job must not
    raise: Hydra's sweeper raises on the first failed JobReturn and then skips
    ``on_multirun_end`` (no aggregation, no lock release). Its JobReturn reaches
    the sweep process only through that launcher, which keeps nothing but the
    status and the return value, so its failure travels in this file, appended
    by whichever process ran the job. rnn-sweep's packing launcher does not need
    it: its workers return each run's outcome with the JobReturn.

    ``code``: 2 for a job that was refused (invalid input, a directory in the
    way), 1 for a run that failed. The failure is also kept in this process
    (:data:`rnn_sweep.launch.failures.JOB_FAILURES`), so it counts even where the file
    cannot be written (a full disk).
    """
    line = " ".join(message.split())
    failures.JOB_FAILURES.append((code, line))
    path = Path(str(HydraConfig.get().sweep.dir)) / FAILURES_FILE
    try:
        with open(path, "a") as f:  # O_APPEND: concurrent short lines do not interleave
            f.write(f"{code}\t{line}\n")
    except OSError as err:
        log.warning("cannot note the failure in %s (%s); it still counts for this sweep", path, err.strerror or err)


def read_failures(sweep_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """The (exit code, message) lines of ``<sweep dir>/.failures`` (code 1 for lines without one)."""
    path = Path(sweep_dir) / FAILURES_FILE
    out = []
    try:
        text = path.read_text() if path.exists() else ""
    except OSError:
        text = ""  # the failures of this process are in failures.JOB_FAILURES anyway
    for line in text.splitlines():
        code, sep, text = line.partition("\t")
        out.append((int(code), text) if sep and code.isdigit() else (failures.RUN_FAILED, line))
    return [(c, t) for c, t in out if t.strip()]


def _discard_new_job_dirs(run_dir: str) -> None:
    """Remove what Hydra created for an invalid sweep job: its empty run dir (if new), its records."""
    hc = HydraConfig.get()
    path = Path(run_dir)
    if _EXISTED_BEFORE.pop(os.path.abspath(run_dir), True) is False and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    meta = Path(str(hc.sweep.dir)).absolute() / records.JOBS_DIR / str(hc.sweep.subdir)
    for name in (*records.HYDRA_FILES, f"{hc.job.name}.log"):
        (meta / name).unlink(missing_ok=True)
    if meta.is_dir() and not any(meta.iterdir()):
        meta.rmdir()


def _require_writable(directory: str) -> None:
    """Stop with one line (not Hydra's traceback) when the output directory cannot be written."""
    try:
        records.check_writable(Path(str(directory)))
    except OSError as err:
        failures.fail(err)


def _verbose_from_hydra(config: DictConfig) -> None:
    """``hydra.verbose=true`` also shows TensorFlow's native start-up lines (here and in workers)."""
    from rnn_sweep.run.runtime import VERBOSE_ENV

    if OmegaConf.select(config, "hydra.verbose", default=False):
        os.environ.setdefault(VERBOSE_ENV, "1")  # before TensorFlow loads; inherited by workers


def _safety_check(what: str):
    """A callback method whose every error refuses the launch: one line, exit 2 (a safety check never warns).

    Hydra turns an Exception raised by a callback into a warning and goes on, so
    a check that crashed (a RecursionError in a deep folder chain, an OSError on
    an overlong path) would leave the run or sweep unprotected; only SystemExit
    gets through. ``what`` names the check for the message.
    """
    def wrap(method):
        def checked(self, config: DictConfig, **kwargs) -> None:
            try:
                method(self, config, **kwargs)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as err:  # noqa: BLE001 -- any failure of a check is a refusal
                failures.refuse(f"cannot check the {what} {_target(config, what)}, so nothing was started: "
                                f"{type(err).__name__}: {failures.one_line(str(err))[:300]}")
        checked.__doc__, checked.__name__ = method.__doc__, method.__name__
        return checked
    return wrap


def _target(config: DictConfig, what: str) -> str:
    key = "hydra.sweep.dir" if what == "sweep directory" else "hydra.run.dir"
    try:
        return str(OmegaConf.select(config, key))
    except Exception:  # noqa: BLE001 -- only for the message
        return f"({key})"


def empty_sweep(config: DictConfig) -> str | None:
    """The sweep override that gives no value at all (``seed=range(0,0)``), for Hydra's basic sweeper; else None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if "basic_sweeper" not in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
        return None  # another sweeper (e.g. optuna) reads its search space its own way
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception:  # noqa: BLE001 -- Hydra's sweeper reports a bad override itself, in one line
        return None
    for override in parsed:
        if override.is_sweep_override() and not override.is_hydra_override():
            try:
                if not list(override.sweep_string_iterator()):
                    return override.input_line
            except Exception:  # noqa: BLE001 -- e.g. glob(), which needs the config loader
                continue
    return None


# The directory this command writes, for the line printed when it is interrupted.
ACTIVE: dict[str, str] = {}


class SweepLockCallback(Callback):
    """Checks and locks the output before any work: the run dir of a run, the sweep dir of a sweep.

    A single run is validated and its run directory checked (no foreign files,
    not ``.``/``~``/``/``, not a sweep) before Hydra creates it, then locked
    (``.run.lock``) until it ends. A multirun holds ``<sweep dir>/.sweep.lock``
    from start to end and starts it without a ``.failures`` file, so that
    :func:`sweep_failures` finds this launch's failed jobs only. Any error inside
    these checks refuses (exit 2).
    """

    def __init__(self) -> None:
        self.lock = None

    def _hold(self, lock) -> None:
        try:
            lock.acquire()
        except Locked as err:
            # Hydra turns an Exception raised by a callback into a warning; a launch
            # that must not start needs SystemExit.
            failures.fail(err)
        self.lock = lock
        atexit.register(lock.release)  # also when the run ends early (Ctrl-C, launcher error)

    @_safety_check("run directory")
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _verbose_from_hydra(config)
        run_dir = str(config.hydra.run.dir)
        try:
            to_run_config(config)
            records.check_run_dir(run_dir)
        except (ConfigError, records.UnsafeDirectory) as err:
            failures.fail(err)  # before Hydra creates the run directory: nothing is left behind
        _require_writable(run_dir)
        self._hold(run_lock(run_dir))
        ACTIVE.update(kind="run", path=run_dir)
        failures.STARTED = True

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        if self.lock is not None:
            self.lock.release()

    @_safety_check("sweep directory")
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _verbose_from_hydra(config)
        sweep_dir = str(config.hydra.sweep.dir)
        if "force" in config:  # a sweep-wide option (a swept +force is checked per job by the launcher)
            try:
                force_requested(config)
            except ConfigError as err:
                failures.fail(err)  # before the sweep directory exists
        nothing = empty_sweep(config)
        if nothing is not None:
            failures.refuse(f"{nothing} gives no value, so this sweep has no jobs: nothing to train, "
                            "nothing was written (give it at least one value)")
        aggregate_out = OmegaConf.select(config, "hydra.callbacks.aggregate.out", default="aggregate")
        try:
            records.check_sweep_dir(sweep_dir, aggregate_dir=str(aggregate_out))
        except records.UnsafeDirectory as err:
            failures.fail(err)
        _require_writable(sweep_dir)
        self._hold(SweepLock(sweep_dir))
        os.environ[SWEEP_PID_ENV] = str(os.getpid())  # inherited by the workers launched next
        (Path(sweep_dir) / FAILURES_FILE).unlink(missing_ok=True)
        ACTIVE.update(kind="sweep", path=sweep_dir)
        failures.STARTED = True

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        stop_idle_workers()
        forget_dead_workers(str(config.hydra.sweep.dir), wait_s=0)
        if self.lock is not None:
            self.lock.release()


def job_threads(train_threads: int) -> int:
    """TensorFlow intra-op threads for this job: the user's, else a share of the launcher's cores.

    Parallel launchers run several jobs per machine (joblib) or get a fixed CPU
    allocation (Slurm); giving each job all cores would oversubscribe the CPU.
    rnn-sweep's packing launcher (rnn_sweep.launch.launcher) names the launcher it wraps
    in ``wrapped`` and carries that launcher's settings (n_jobs, cpus_per_task).
    """
    if train_threads:
        return train_threads
    hc = HydraConfig.get()
    launcher = hc.launcher
    target = str(launcher.get("wrapped") or launcher.get("_target_", ""))
    cores = os.cpu_count() or 1
    if "joblib" in target:
        n = int(launcher.get("n_jobs") or -1)
        jobs = n if n > 0 else max(1, cores + 1 + n)  # joblib: -1 = all cores, -2 = all but one
        return max(1, cores // jobs)
    if "submitit" in target:
        return int(launcher.get("cpus_per_task") or 1)
    if "ray" in target:  # each Ray task reserves ray.remote.num_cpus (Ray's default: 1)
        return int(OmegaConf.select(launcher, "ray.remote.num_cpus", default=None) or 1)
    return 0


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Resolve a composed Hydra config into a validated RunConfig (no TensorFlow).

    Only the run's own keys are resolved: ``hydra`` (whose run-time values may not
    be set yet, e.g. in a callback) and ``force`` (a sweep option) are left out.
    """
    raw = {}
    for key in cfg:
        if key in ("hydra", "force"):
            continue
        value = cfg[key]
        raw[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    run_cfg = from_dict(raw)
    validate(run_cfg)
    force_requested(cfg)  # refused here, with the rest of the config, before any work
    return run_cfg


def force_requested(cfg: DictConfig) -> bool:
    """``+force=<bool>``: replace a finished run of another config. Strict: ``+force=no`` is false."""
    return parse_bool("force", cfg.get("force", False))


def forget_dead_workers(sweep_dir: str, wait_s: float = 2.0) -> None:
    """Drop the ``.workers/`` entries of dead workers (after an interrupt, waiting up to ``wait_s`` for them to die).

    Workers that outlive the wait die with this process (rnn_sweep.run.job.die_with_parent);
    the next sweep into the directory removes their entries then.
    """
    import time

    from rnn_sweep.run.locks import live_workers

    deadline = time.monotonic() + wait_s
    try:
        while live_workers(sweep_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
    except OSError:
        pass  # only tidying: the entries of dead workers never hold a sweep back


def sweep_failures() -> list[tuple[int, str]]:
    """(exit code, line) of every job of this command's sweep that was refused or failed (none for a run).

    Read once the multirun is over (its callbacks, the aggregation included, have
    run): the jobs of Hydra's own launchers and a failed aggregation noted in
    ``<sweep dir>/.failures``, the rest in :data:`rnn_sweep.launch.failures.JOB_FAILURES`.
    """
    if ACTIVE.get("kind") != "sweep":
        return []
    found = read_failures(ACTIVE["path"]) + failures.JOB_FAILURES
    return list(dict.fromkeys(found))  # a failure noted twice (file and memory) counts once


def job_refused(err: ConfigError, run_dir: str, multirun: bool) -> None:
    """An invalid job: a single run exits 2; a sweep job removes what its launch created and is noted."""
    if not multirun:
        failures.fail(err)
    _discard_new_job_dirs(run_dir)
    finish_job(RunOutcome(run_dir, "refused", error=f"{run_dir}: {' '.join(str(err).split())}"), multirun)


def finish_job(outcome: RunOutcome, multirun: bool) -> float | None:
    """What the task returns for a run: its held-out loss, after its one line.

    A single run that was refused, failed or diverged exits (2, 1, 1) with one
    line; a sweep job's failure is noted (:func:`record_failure`, and listed at
    the end by :func:`rnn_sweep.launch.cli.main`) and the other jobs go on.
    """
    if outcome.error is not None and not multirun:
        failures.refuse(outcome.error, code=outcome.exit_code)
    log.info("%s", outcome.line())
    if outcome.error is not None:
        record_failure(outcome.error, outcome.exit_code)
        return None
    summary = outcome.summary or {}
    if summary.get("status") == "diverged" and not multirun:
        cfg = summary.get("config") or {}
        failures.refuse(f"the run diverged at step {summary.get('diverged_at_step')} (a loss block above "
                        f"train.diverge_loss={(cfg.get('train') or {}).get('diverge_loss')} or not finite); "
                        f"its record is in {outcome.run_dir}", code=failures.RUN_FAILED)
    return outcome.heldout_loss


def stop_idle_workers() -> None:
    """End joblib's idle worker processes when the sweep is over (not between Optuna's batches).

    Loky keeps them for reuse; once the sweep process exits they die by SIGKILL
    (rnn_sweep.run.job.die_with_parent), leaving their ``.workers/`` entries
    behind. Ended here, they exit normally and remove them.
    """
    if "joblib.externals.loky.reusable_executor" not in sys.modules:
        return  # no joblib worker was started
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)
