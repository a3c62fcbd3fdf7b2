"""The ``rnn-sweep`` command: parse (Hydra composes the config), call the core, exit.

``rnn-sweep`` trains one configuration (or, with ``-m`` or an experiment file,
every combination of a sweep). :func:`run` turns the composed config into a
validated :class:`~rnn_sweep.task.config.RunConfig` (before TensorFlow is imported)
and hands it to :func:`rnn_sweep.run.core.execute_pack`; :func:`main` turns what
happened into one line and an exit code (:mod:`rnn_sweep.launch.failures`). The Hydra
glue (resolvers, the sweep-lock callback) is :mod:`rnn_sweep.launch.hydra_glue`.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rnn_sweep.launch import failures
from rnn_sweep.task.config import ConfigError
from rnn_sweep.run.core import Job, execute_pack
from rnn_sweep.launch.hydra_glue import (ACTIVE, finish_job, force_requested, forget_dead_workers, job_refused, job_threads,
                                  sweep_failures, to_run_config)
from rnn_sweep.run.job import guard_worker

# The repository's top-level conf/ (an absolute path, so it works from any cwd).
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def run(cfg: DictConfig) -> float | None:
    """Train one configuration into Hydra's run (or sweep job) directory; return its held-out loss.

    In a sweep a finished run is skipped, an unfinished one retrained, and a
    failing or invalid one recorded while the other jobs go on (see
    :func:`rnn_sweep.run.core.execute_pack`); :func:`main` exits non-zero at the end.
    """
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    multirun = getattr(hc.mode, "name", "") == "MULTIRUN"
    if multirun:
        guard_worker(hc.sweep.dir)
    try:
        run_cfg = to_run_config(cfg)
    except ConfigError as err:
        job_refused(err, run_dir, multirun)
        return None
    # A single run holds its run lock from the sweep-lock callback's on_run_start on.
    job = Job(run_cfg, Path(run_dir), force_requested(cfg), locked=not multirun)
    outcome = execute_pack([job], job_threads(run_cfg.train.threads))[0]
    return finish_job(outcome, multirun)


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
    """Console script ``rnn-sweep``; exit codes are :mod:`rnn_sweep.launch.failures`' (0 ok, 1 failed, 2 bad input, 130)."""
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
                forget_dead_workers(ACTIVE["path"])
            _exit(code)
    except SystemExit as stop:  # ours (failures.fail/refuse), Hydra's (--help: 0), argparse's (2)
        _exit(stop.code if isinstance(stop.code, int) else (0 if stop.code is None else failures.RUN_FAILED))
    _exit(report_sweep_failures(sweep_failures()))


def quiet_log_write_errors() -> None:
    """A log line that cannot be written (the disk is full) is dropped, not printed with a traceback.

    Python's logging prints "--- Logging error ---" and a traceback on stderr for
    every such line, dozens per run; the failure that matters is reported
    anyway, in one line naming the file, by the run that could not write it.
    """
    logging.raiseExceptions = False


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
