"""Thin Hydra entry points: compose the config, then call the library.

``rnn-sweep`` trains one configuration (or, with ``-m`` or an experiment file,
every combination of a sweep). All logic lives in :mod:`rnn_sweep.train` and
:mod:`rnn_sweep.sweep`; this module turns a Hydra ``DictConfig`` into a
validated :class:`~rnn_sweep.config.RunConfig` (before TensorFlow is imported),
reports errors in one line, and holds the Hydra glue: the resolvers used in
``conf/config.yaml`` and the callback that locks a sweep directory.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnn_sweep.config import ConfigError, RunConfig, from_dict, validate
from rnn_sweep.sweep import ConfigMismatch, RunFailed, SweepLock, SweepLocked, run_job

log = logging.getLogger("rnn_sweep")
ConfigStore.instance().store(name="rnn_sweep_schema", node=RunConfig)
# The repository's top-level conf/ (an absolute path, so it works from any cwd).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
NO_EXPERIMENT = "adhoc"  # sweep directory name of a command-line sweep without experiment=


def _sweep_name(choice) -> str:
    return NO_EXPERIMENT if choice in (None, "None", "null", "") else str(choice)


def _meta_dir(mode, run_value: str, *, _root_) -> str:
    """Where Hydra's per-job records go: ``run_value`` in a single run, else outside the run dir."""
    if getattr(mode, "name", str(mode)) != "MULTIRUN":
        return run_value
    sweep = _root_.hydra.sweep
    meta = Path(sweep.dir).absolute() / ".jobs" / str(sweep.subdir)
    meta.mkdir(parents=True, exist_ok=True)  # Hydra opens the job log before creating .hydra
    return str(meta)


def _run_subdir(override_dirname) -> str:
    """A sweep job's directory name: its overrides, or ``base`` when it has none (``-m`` alone)."""
    return str(override_dirname) or "base"


OmegaConf.register_new_resolver("rnn_sweep_name", _sweep_name, replace=True)
OmegaConf.register_new_resolver("rnn_sweep_subdir", _run_subdir, replace=True)
OmegaConf.register_new_resolver("rnn_sweep_meta", _meta_dir, replace=True)


FAILURES_FILE = ".failures"  # in the sweep dir: one line per job that failed in this launch
SWEEP_FAILURES: list[str] = []  # filled at the end of a multirun, read by main() for the exit status


def record_failure(message: str) -> None:
    """Note a failed job in ``<sweep dir>/.failures`` (shared by every launcher's workers).

    Jobs do not raise (Hydra would then skip ``on_multirun_end``: no aggregation,
    no lock release); the sweep's exit status comes from this file instead.
    """
    print(f"rnn-sweep: job failed: {message}", file=sys.stderr)
    path = Path(str(HydraConfig.get().sweep.dir)) / FAILURES_FILE
    with open(path, "a") as f:  # O_APPEND: concurrent short lines do not interleave
        f.write(" ".join(message.split()) + "\n")


def _require_writable(directory: str) -> None:
    """Stop with one line (not Hydra's traceback) when the output directory cannot be written."""
    from rnn_sweep.train import check_writable

    try:
        check_writable(Path(str(directory)))
    except OSError as err:
        print(f"rnn-sweep: error: {err}", file=sys.stderr)
        sys.exit(1)


class SweepLockCallback(Callback):
    """Holds ``<sweep dir>/.sweep.lock`` from the start to the end of a multirun.

    It also collects the jobs that failed in this launch (``.failures``) so that
    :func:`main` can exit non-zero after every job ran and the sweep was aggregated.
    """

    def __init__(self) -> None:
        self.lock: SweepLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _require_writable(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _require_writable(config.hydra.sweep.dir)
        self.lock = SweepLock(config.hydra.sweep.dir)
        try:
            self.lock.acquire()
        except SweepLocked as err:
            # Hydra turns an Exception raised by a callback into a warning; a sweep
            # that must not start needs SystemExit.
            print(f"rnn-sweep: error: {err}", file=sys.stderr)
            sys.exit(2)
        atexit.register(self.lock.release)  # also when the sweep ends early (Ctrl-C, launcher error)
        (Path(str(config.hydra.sweep.dir)) / FAILURES_FILE).unlink(missing_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        path = Path(str(config.hydra.sweep.dir)) / FAILURES_FILE
        if path.exists():
            SWEEP_FAILURES.extend(line for line in path.read_text().splitlines() if line.strip())
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
    """Resolve a composed Hydra config into a validated RunConfig (no TensorFlow)."""
    raw = OmegaConf.to_container(cfg, resolve=True)
    raw.pop("hydra", None)
    raw.pop("force", None)  # +force=true is a sweep option, not part of the run
    run_cfg = from_dict(raw)
    validate(run_cfg)
    return run_cfg


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def run(cfg: DictConfig) -> float | None:
    """Train one configuration into Hydra's run (or sweep job) directory.

    In a sweep a finished run is skipped, an unfinished one retrained, and a
    failing one recorded (status ``failed``) and raised, so Hydra reports it
    and exits non-zero after the other jobs (see :func:`rnn_sweep.sweep.run_job`).
    """
    try:
        run_cfg = to_run_config(cfg)
    except ConfigError as err:
        print(f"rnn-sweep: error: {err}", file=sys.stderr)
        sys.exit(2)
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    force = bool(cfg.get("force", False))
    multirun = getattr(hc.mode, "name", "") == "MULTIRUN"
    try:
        summary = run_job(run_cfg, run_dir, force=force, threads=job_threads(run_cfg.train.threads))
    except (ConfigMismatch, RunFailed) as err:
        if multirun:  # the other jobs go on; main() exits non-zero at the end
            record_failure(str(err))
            return None
        print(f"rnn-sweep: error: {err}", file=sys.stderr)  # the traceback is in the job's log
        sys.exit(1 if isinstance(err, RunFailed) else 2)
    except OSError as err:  # e.g. an unwritable or full output directory
        if multirun:
            record_failure(f"{run_dir}: {err}")
            return None
        print(f"rnn-sweep: error: {err}", file=sys.stderr)
        sys.exit(1)
    log.info("%s: final loss %.4f, held-out %.4f (levels %s), learned %s -> %s",
             summary["status"], summary["final_loss"] or float("nan"),
             summary["heldout_loss"] or float("nan"),
             " / ".join(f"{lv['name']} {lv['loss']:.4f}" for lv in summary["levels"]),
             summary["learned_fraction"], run_dir)
    return summary["heldout_loss"]


def main() -> None:
    """Console script ``rnn-sweep``: exits 1 when any job of a sweep failed."""
    run()
    code = 0
    if SWEEP_FAILURES:
        print(f"rnn-sweep: {len(SWEEP_FAILURES)} job(s) failed; their summary.json records the error, "
              "and rerunning the sweep retries them:", file=sys.stderr)
        for line in SWEEP_FAILURES:
            print(f"  {line}", file=sys.stderr)
        code = 1
    _exit(code)


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
