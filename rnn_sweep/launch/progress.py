"""Sweep progress: one line per finished run, ``[k/N]`` with elapsed time and an ETA.

Pure bookkeeping (no Hydra, no TensorFlow): the launcher calls :meth:`Progress.pack_done`
as each pack's results reach the sweep process, whatever launcher ran the pack.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Sequence

log = logging.getLogger("rnn_sweep.launch.progress")


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``1m15s``; ``3725`` -> ``1h02m``; under a minute: ``42s``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Counts finished runs of a sweep and reports each with ``[k/N]``, elapsed and ETA.

    The ETA assumes the remaining runs take as long on average as the finished ones
    (packs finish several runs at once, so it is rough early on and improves).
    """

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic,
                 emit: Optional[Callable[[str], None]] = None) -> None:
        self.total, self.done, self.clock = total, 0, clock
        self.start = clock()
        self.emit = emit or log.info

    def eta(self) -> Optional[float]:
        """Seconds until every run is done at the average pace so far; None before any run finished."""
        if self.done == 0:
            return None
        return (self.clock() - self.start) / self.done * (self.total - self.done)

    def pack_done(self, lines: Sequence[str]) -> None:
        """Report the runs of one finished pack, each by its one line (:meth:`rnn_sweep.run.core.RunOutcome.line`)."""
        for line in lines:
            self.done += 1
            elapsed = format_seconds(self.clock() - self.start)
            eta = self.eta()
            tail = "done" if self.done >= self.total else f"ETA {format_seconds(eta)}"
            self.emit(f"[{self.done}/{self.total}] {line} ({elapsed} elapsed, {tail})")
