"""Thin Hydra entry points: compose the config, then call the library.

``rnn-sweep`` trains one configuration (or, with ``-m`` or an experiment file,
every combination of a sweep). All logic lives in :mod:`rnn_sweep.train` and
:mod:`rnn_sweep.sweep`; this module turns a Hydra ``DictConfig`` into a
validated :class:`~rnn_sweep.config.RunConfig` (before TensorFlow is imported)
and holds the Hydra glue: the resolvers used in ``conf/config.yaml`` and the
callback that checks and locks a run or sweep directory before any work.
What an error prints and which exit code it gives is :mod:`rnn_sweep.failures`'.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnn_sweep import failures, records
from rnn_sweep.config import ConfigError, RunConfig, from_dict, parse_bool, validate
from rnn_sweep.locks import Locked
from rnn_sweep.sweep import (ConfigMismatch, RunFailed, SweepLock, guard_worker, lock_unless_finished, run_job,
                             run_lock)

log = logging.getLogger("rnn_sweep")
ConfigStore.instance().store(name="rnn_sweep_schema", node=RunConfig)
# The repository's top-level conf/ (an absolute path, so it works from any cwd).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
NO_EXPERIMENT = "adhoc"  # sweep directory name of a command-line sweep without experiment=
NAME_MAX = 255  # bytes per path component on Linux/macOS file systems
SWEEP_PID_ENV = "RNN_SWEEP_SWEEP_PID"  # the sweep process, for its workers (rnn_sweep.sweep.guard_worker)
# Run directories of this process's sweep jobs, and whether each existed before
# Hydra created it: only a directory this launch created may be removed again.
_EXISTED_BEFORE: dict[str, bool] = {}


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


FAILURES_FILE = records.FAILURES_FILE
SWEEP_FAILURES: list[tuple[int, str]] = []  # (exit code, line), filled at the end of a multirun


def record_failure(message: str, code: int = failures.RUN_FAILED) -> None:
    """Note a failed job in ``<sweep dir>/.failures`` (shared by every launcher's workers).

    Jobs do not raise (Hydra would then skip ``on_multirun_end``: no aggregation,
    no lock release); the sweep's exit status comes from this file instead:
    ``code`` 2 for a job that was refused (invalid input, a directory in the way),
    1 for a run that failed. The failure is also kept in this process
    (:data:`rnn_sweep.failures.JOB_FAILURES`), so it counts even where the file
    cannot be written (a full disk).
    """
    line = " ".join(message.split())
    print(f"rnn-sweep: job {'refused' if code == failures.BAD_INPUT else 'failed'}: {line}", file=sys.stderr)
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
    from rnn_sweep.runtime import VERBOSE_ENV

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
    from start to end and collects the jobs that failed in this launch
    (``.failures``), so that :func:`main` exits non-zero after every job ran and
    the sweep was aggregated. Any error inside these checks refuses (exit 2).
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
        found = read_failures(str(config.hydra.sweep.dir)) + failures.JOB_FAILURES
        SWEEP_FAILURES.extend(dict.fromkeys(found))  # a failure noted twice (file and memory) counts once
        from rnn_sweep.launcher import stop_idle_workers

        stop_idle_workers()
        _forget_dead_workers(str(config.hydra.sweep.dir), wait_s=0)
        if self.lock is not None:
            self.lock.release()


def job_threads(train_threads: int) -> int:
    """TensorFlow intra-op threads for this job: the user's, else a share of the launcher's cores.

    Parallel launchers run several jobs per machine (joblib) or get a fixed CPU
    allocation (Slurm); giving each job all cores would oversubscribe the CPU.
    rnn-sweep's packing launcher (rnn_sweep.launcher) names the launcher it wraps
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


def _job_failed(err: BaseException, run_dir: str, multirun: bool) -> None:
    """A sweep job records its failure and returns (the other jobs go on); a single run exits."""
    if not multirun:
        failures.fail(err)
    record_failure(str(err) if str(run_dir) in str(err) else f"{run_dir}: {err}", failures.exit_code(err))


def _report(summary: dict, run_dir: str) -> None:
    levels = " / ".join(f"{lv['name']} {lv['loss']:.4f}" for lv in summary.get("levels") or [])
    log.info("%s: final loss %.4f, held-out %.4f (levels %s), learned %s -> %s",
             summary.get("status"), summary.get("final_loss") or float("nan"),
             summary.get("heldout_loss") or float("nan"), levels, summary.get("learned_fraction"), run_dir)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def run(cfg: DictConfig) -> float | None:
    """Train one configuration into Hydra's run (or sweep job) directory.

    In a sweep a finished run is skipped, an unfinished one retrained, and a
    failing or invalid one recorded (``.failures``; a training error also in the
    run's summary.json) while the other jobs go on (see
    :func:`rnn_sweep.sweep.run_job`); :func:`main` exits non-zero at the end.
    """
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    multirun = getattr(hc.mode, "name", "") == "MULTIRUN"
    if multirun:
        guard_worker(hc.sweep.dir, int(os.environ.get(SWEEP_PID_ENV, os.getpid())))
    try:
        run_cfg = to_run_config(cfg)
    except ConfigError as err:
        if multirun:
            _discard_new_job_dirs(run_dir)  # an invalid job leaves no directory behind
        _job_failed(err, run_dir, multirun)
        return None
    force = force_requested(cfg)
    lock = None
    try:
        if multirun:  # a single run holds its lock from on_run_start on
            lock = lock_unless_finished(run_cfg, run_dir, force)
        summary = run_job(run_cfg, run_dir, force=force, threads=job_threads(run_cfg.train.threads))
    except (ConfigMismatch, Locked, RunFailed, records.UnsafeDirectory, OSError) as err:
        _job_failed(err, run_dir, multirun)  # a training traceback is in the job's log
        return None
    finally:
        if lock is not None:
            lock.release()
    _report(summary, run_dir)
    if summary.get("status") == "diverged" and not multirun:
        failures.refuse(f"the run diverged at step {summary.get('diverged_at_step')} (a loss block above "
                        f"train.diverge_loss={run_cfg.train.diverge_loss} or not finite); its record is in "
                        f"{run_dir}", code=failures.RUN_FAILED)
    return summary.get("heldout_loss")


def _group_given_a_boolean(argv: list[str]) -> str | None:
    """A config group set to true/false on the command line (YAML makes it a boolean): the message."""
    conf = Path(CONF_DIR)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or not (conf / key).is_dir():
            continue
        if any(v.strip().lower() in ("true", "false", "on", "off", "yes", "no") for v in value.split(",")):
            options = sorted(p.stem for p in (conf / key).glob("*.yaml"))
            return (f"{key}={value} is invalid: YAML reads {value!r} as a boolean, and {key} takes one of "
                    f"its options: {', '.join(options)}"
                    + (" (true BPTT is truncation=true_bptt)" if key == "truncation" else ""))
    return None


def main() -> None:
    """Console script ``rnn-sweep``; exit codes are :mod:`rnn_sweep.failures`' (0 ok, 1 failed, 2 bad input, 130)."""
    bad = _group_given_a_boolean(sys.argv[1:])
    if bad:
        failures.refuse(bad)
    user_wants_trace = "HYDRA_FULL_ERROR" in os.environ
    # Hydra prints its own errors with a traceback and exits 1; asked for the full
    # error it raises instead, and failures.fail turns it into one line and an exit code.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    failures.terminate_as_interrupt()
    quiet_log_write_errors()
    try:
        try:
            run()
        except Exception as err:  # noqa: BLE001 -- the one place an error becomes a message and a code
            if user_wants_trace:
                raise
            failures.fail(err)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: one line, no traceback
            if user_wants_trace:
                raise
            code = failures.interrupted(ACTIVE.get("kind"), ACTIVE.get("path"))
            if ACTIVE.get("kind") == "sweep":
                _forget_dead_workers(ACTIVE["path"])
            _exit(code)
    except SystemExit as stop:  # ours (failures.fail/refuse), Hydra's (--help: 0), argparse's (2)
        _exit(stop.code if isinstance(stop.code, int) else (0 if stop.code is None else failures.RUN_FAILED))
    _exit(report_sweep_failures(SWEEP_FAILURES))


def quiet_log_write_errors() -> None:
    """A log line that cannot be written (the disk is full) is dropped, not printed with a traceback.

    Python's logging prints "--- Logging error ---" and a traceback on stderr for
    every such line, dozens per run; the failure that matters is reported
    anyway, in one line naming the file, by the run that could not write it.
    """
    logging.raiseExceptions = False


def _forget_dead_workers(sweep_dir: str, wait_s: float = 2.0) -> None:
    """Drop the ``.workers/`` entries of dead workers (after an interrupt, waiting up to ``wait_s`` for them to die).

    Workers that outlive the wait die with this process (rnn_sweep.sweep.die_with_parent);
    the next sweep into the directory removes their entries then.
    """
    import time

    from rnn_sweep.locks import live_workers

    deadline = time.monotonic() + wait_s
    try:
        while live_workers(sweep_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
    except OSError:
        pass  # only tidying: the entries of dead workers never hold a sweep back


def report_sweep_failures(found: list[tuple[int, str]]) -> int:
    """Print the jobs of a sweep that were refused or failed, each saying which; return the exit status."""
    if not found:
        return failures.OK
    refused = [line for code, line in found if code == failures.BAD_INPUT]
    failed = [line for code, line in found if code != failures.BAD_INPUT]
    parts = ([f"{len(refused)} refused (nothing trained: bad input, or a directory in the way)"] if refused else []) \
        + ([f"{len(failed)} failed (training or writing its results raised)"] if failed else [])
    print(f"rnn-sweep: {len(found)} job(s) did not finish: {', '.join(parts)}; the finished ones are kept, "
          "and rerunning the sweep retries these:", file=sys.stderr)
    for line in refused:
        print(f"  refused: {line}", file=sys.stderr)
    for line in failed:
        print(f"  failed: {line}", file=sys.stderr)
    return max(code for code, _ in found)


def _exit(code: int) -> None:
    """Exit without the interpreter's teardown once TensorFlow was loaded.

    Finalising TensorFlow's modules and runtime objects at interpreter exit takes
    ~1 s here, longer than a whole compiled epoch. Every result is already on disk
    (summary.json written and fsynced), so run the atexit handlers (lock release,
    worker-pool shutdown), flush logs and streams, and leave.
    """
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
