"""Hydra callback: aggregate a sweep as soon as its multirun ends.

Registered in ``conf/config.yaml`` under ``hydra.callbacks.aggregate``. Thin on
purpose: the work is :func:`rnn_sweep.aggregate_cli.run`, the same code as the
``rnn-sweep-aggregate`` command. An aggregation problem is logged and never
fails the sweep: the runs are the valuable part and the command can be rerun.
A sweep with failed jobs is aggregated too (jobs record failures instead of
raising, see ``rnn_sweep.cli.record_failure``); the failed runs show in the warnings.
"""

from __future__ import annotations

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("rnn_sweep.aggregate")


class AggregateCallback(Callback):
    """Writes the sweep's tables and figures into ``<sweep dir>/<out>`` after the last job.

    Args:
        out: output directory; relative paths are taken inside the sweep directory.
        formats: comma-separated figure formats (see ``rnn-sweep-aggregate --help``).
        enabled: set ``hydra.callbacks.aggregate.enabled=false`` to skip aggregation.
    """

    def __init__(self, out: str = "aggregate", formats: str = "png,pdf", enabled: bool = True) -> None:
        self.out, self.formats, self.enabled = out, formats, enabled

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not self.enabled:
            return
        from pathlib import Path

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            from rnn_sweep.aggregate_cli import parse_formats, run

            code = run(sweep_dir, sweep_dir / self.out, parse_formats(self.formats))
            if code == 0:
                log.info("aggregated the sweep into %s", sweep_dir / self.out)
            else:
                log.warning("nothing to aggregate in %s", sweep_dir)
        except Exception:  # noqa: BLE001 -- a failed aggregation must never fail a finished sweep
            log.exception("aggregating %s failed; rerun: rnn-sweep-aggregate %s", sweep_dir, sweep_dir)
