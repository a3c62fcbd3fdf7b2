"""Hydra callback: aggregate a sweep as soon as its multirun ends.

Registered in ``conf/config.yaml`` under ``hydra.callbacks.aggregate``. Thin on
purpose: the work is :func:`rnn_sweep.analysis.aggregate_cli.run`, the same code as the
``rnn-sweep-aggregate`` command, with the same rule for its output folder
(:mod:`rnn_sweep.analysis.outdir`: only files it provably wrote are replaced).

Its settings are checked when Hydra creates it, before anything runs: a bad
``formats`` or ``enabled`` (booleans are parsed strictly, see
:func:`rnn_sweep.task.config.parse_bool`) stops the command with one line and exit
status 2. Hydra turns an exception raised by a callback into a warning, so the
refusals are SystemExit, through :mod:`rnn_sweep.launch.failures`. The output folder
is checked when the multirun starts, before any job trains, for every file the
aggregation may write (which figures the runs give is not known yet): ``out=..``
beside the user's own ``runs.csv`` or ``grid.png`` is refused there, exit 2. An
aggregation that still fails at the end (a file appeared meanwhile, another
aggregation holds the folder, the disk is full) cannot undo the trained runs:
it prints one line and is recorded in ``<sweep dir>/.failures`` like a failed
job, so the sweep's exit status is not 0 (2 refused, 1 could not write); rerun
``rnn-sweep-aggregate <sweep dir>``. A sweep with failed jobs is aggregated
too; the failed runs show in the warnings.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnn_sweep.launch import failures
from rnn_sweep.analysis.outdir import FORMATS, candidates

log = logging.getLogger("rnn_sweep.analysis.tables")
KEY = "hydra.callbacks.aggregate"


class AggregateCallback(Callback):
    """Writes the sweep's tables and figures into ``<sweep dir>/<out>`` after the last job.

    Args:
        out: output directory; relative paths are taken inside the sweep directory.
        formats: comma-separated figure formats (see ``rnn-sweep-aggregate --help``).
        enabled: set ``hydra.callbacks.aggregate.enabled=false`` to skip aggregation.
    """

    def __init__(self, out: str = "aggregate", formats: str = "png,pdf", enabled: bool = True) -> None:
        from rnn_sweep.analysis.aggregate_cli import UsageError, parse_formats
        from rnn_sweep.task.config import ConfigError, parse_bool

        try:
            self.enabled = parse_bool(f"{KEY}.enabled", enabled)
        except ConfigError as err:
            failures.fail(err)
        if not isinstance(out, str) or not out.strip():
            failures.refuse(f"{KEY}.out={out!r} is invalid: a folder path (relative: inside the sweep directory)")
        try:
            self.formats = parse_formats(formats)
        except UsageError:
            failures.refuse(f"{KEY}.formats={formats!r} is invalid: comma-separated values among "
                            f"{', '.join(FORMATS)}")
        self.out = out

    def _dirs(self, config: DictConfig) -> tuple[Path, Path]:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        return sweep_dir, sweep_dir / self.out

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """Refuse an output folder the aggregation could not write, before any job trains."""
        if not self.enabled:
            return
        from rnn_sweep.analysis.aggregate_cli import UsageError, check_out

        sweep_dir, out = self._dirs(config)
        try:
            # Which figures the runs will give is known only at the end: every name it may write is checked now.
            check_out([sweep_dir], out, candidates(self.formats))
        except UsageError as err:
            text = str(err).replace("--out=", "the output folder ", 1).replace("another --out", f"another {KEY}.out")
            failures.refuse(f"{KEY}.out={self.out!r}: {text}")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not self.enabled:
            return
        from rnn_sweep.analysis.aggregate_cli import UsageError, WriteError, run

        sweep_dir, out = self._dirs(config)
        try:
            code = run(sweep_dir, out, self.formats)
        except UsageError as err:
            self._failed(sweep_dir, f"the aggregation was refused: {err}", failures.BAD_INPUT)
        except WriteError as err:
            self._failed(sweep_dir, f"the aggregation failed: {err}", failures.RUN_FAILED)
        except Exception as err:  # noqa: BLE001 -- the trained runs stand; the failure is reported, not raised
            log.exception("aggregating %s failed", sweep_dir)
            self._failed(sweep_dir, f"the aggregation failed ({type(err).__name__}: {err}; the traceback is in "
                                    "the sweep's log)", failures.RUN_FAILED)
        else:
            if code == 0:
                log.info("aggregated the sweep into %s", out)
            else:
                log.warning("nothing to aggregate in %s", sweep_dir)

    @staticmethod
    def _failed(sweep_dir: Path, message: str, code: int) -> None:
        """One line now, and a line in ``.failures`` so that the sweep's exit status is ``code`` or worse."""
        from rnn_sweep.run.records import FAILURES_FILE

        line = f"{' '.join(message.split())}; rerun: rnn-sweep-aggregate {sweep_dir}"
        print(failures.PREFIX + line, file=sys.stderr)
        try:
            with open(sweep_dir / FAILURES_FILE, "a") as f:  # read by the sweep lock's on_multirun_end, after this
                f.write(f"{code}\t{line}\n")
        except OSError as err:
            print(f"{failures.PREFIX}cannot record it in {sweep_dir / FAILURES_FILE} ({err.strerror})",
                  file=sys.stderr)
