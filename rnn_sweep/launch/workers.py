"""How packs reach the wrapped launcher's worker processes: joblib chunks, submitit jobs, progress.

:class:`~rnn_sweep.launch.launcher.PackingLauncher` hands packs to Hydra's joblib
plugin's loky workers (one task per worker: :func:`run_chunk`) or to submitit
(one job per pack: :class:`SubmititPack`); :class:`PackWatcher` follows packs that
finish in other processes through their pack records, for the progress lines.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.types import TaskFunction
from omegaconf import OmegaConf

from rnn_sweep.launch.hydra_jobs import PACK_RECORD, PackedJob, job_records_dir, outcome_of, run_pack, run_packs


def wait_until_done(jobs: Sequence[Any], timeout_s: float = 30.0) -> None:
    """Wait (bounded) until cancelled local submitit jobs have ended: their processes hold their runs'
    locks until they exit, and a rerun started right after the interrupt must not find them held."""
    deadline = time.monotonic() + timeout_s
    pending = list(jobs)
    while pending and time.monotonic() < deadline:
        try:
            pending = [job for job in pending if not job.done()]
        except Exception:  # noqa: BLE001 -- a job whose state cannot be read: nothing to wait for
            return
        if pending:
            time.sleep(0.1)


def run_chunk(chunk: list[int], packs: list[list[PackedJob]], callbacks: Any, task_function: Any,
               state: dict, labels: list[str], launch: str) -> tuple[list[int], list[list[JobReturn]]]:
    """One worker's task: its packs in order, returned with their indices."""
    return chunk, run_packs(packs, callbacks, task_function, state, labels, launch)


class PackWatcher:
    """Reports packs that finish in worker processes, as they finish, from the sweep process.

    A worker writes each member's pack record (``<sweep>/.jobs/<run>/pack.json``)
    when the member is done, with this launch's id and its outcome's line
    (:func:`rnn_sweep.launch.hydra_jobs.run_packs`). A thread polls the records of the
    packs not yet reported and calls ``report(pack, lines)`` once all of a pack's
    members are there; :meth:`finished` reports what is left of a worker's packs
    from its returned results (e.g. with ``hydra.output_subdir=null``, no records).
    Reports are made under one lock, each pack exactly once.
    """

    POLL_S = 0.5

    def __init__(self, packs: list[list[PackedJob]], launch: str, report: Callable) -> None:
        self.packs, self.launch, self.report = packs, launch, report
        self.pending = set(range(len(packs)))
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="rnn-sweep-pack-watcher", daemon=True)

    def __enter__(self) -> "PackWatcher":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()

    def _poll(self) -> None:
        # Resolved here, not in __init__: ~2-4 ms a job (Hydra's interpolations), which must
        # not delay handing the packs to the workers.
        with self.lock:  # the job configs are also read by reports made from the main thread
            records = [[_pack_record(job) for job in pack] for pack in self.packs]
        while not self.stop.wait(self.POLL_S):
            with self.lock:
                todo = sorted(self.pending)
            for i in todo:
                lines = [_finished_line(path, self.launch) for path in records[i]]
                if all(v is not _NOT_YET for v in lines):
                    self._report_once(i, lines)

    def finished(self, chunk: list[int], returns: list[list[JobReturn]]) -> None:
        for i, rets in zip(chunk, returns):
            self._report_once(i, [outcome_of(ret).line() for ret in rets])

    def _report_once(self, i: int, lines: list) -> None:
        with self.lock:
            if i in self.pending:
                self.pending.discard(i)
                self.report(self.packs[i], lines)


_NOT_YET = object()


def _pack_record(job: PackedJob) -> Optional[Path]:
    """Where the worker will write ``job``'s pack record (None: ``hydra.output_subdir=null``)."""
    records = job_records_dir(job.config)
    return None if records is None else records / PACK_RECORD


def _finished_line(path: Optional[Path], launch: str) -> Any:
    """The line of a member that finished in this launch (its outcome's); ``_NOT_YET`` until then."""
    if path is None:
        return _NOT_YET
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return _NOT_YET  # not written yet (records are replaced whole, never half-written)
    return str(record.get("line")) if record.get("launch") == launch else _NOT_YET


class SubmititPack:
    """The callable submitit runs for one pack (one Slurm job); picklable, like the submitit plugin's."""

    def __init__(self, callbacks: Any, task_function: Optional[TaskFunction]) -> None:
        self.callbacks, self.task_function = callbacks, task_function

    def __call__(self, pack: list[PackedJob], label: str, singleton_state: dict) -> list[JobReturn]:
        import submitit

        return run_pack(pack, self.callbacks, self.task_function, singleton_state, label,
                        job_id=str(submitit.JobEnvironment().job_id))

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """On a time-out, resubmit the pack (when max_num_timeout > 0); finished members are then skipped."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


@contextmanager
def stderr_into(path: Optional[Path]) -> Iterator[None]:
    """File descriptor 2 of the processes started meanwhile goes to ``path`` (None: unchanged).

    submitit's local controllers inherit the sweep's stderr; on Ctrl-C each
    stops its pack's process and then prints its own KeyboardInterrupt
    traceback there, in the middle of the sweep's one-line message. Their
    output goes to a file in ``.submitit/`` instead (the packs' own logs are
    there too).
    """
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def joblib_parallel_args(settings: Any) -> dict:
    """``joblib.Parallel``'s keyword arguments from the joblib plugin's settings, as that plugin makes them.

    The loky backend (joblib's threading backend cannot run Hydra jobs), and
    ``pre_dispatch``, ``batch_size`` and ``max_nbytes`` given as numbers in strings
    turned into ints (strings such as ``2*n_jobs`` or ``1M`` stay strings).
    """
    cfg = {**dict(settings), "backend": "loky"}
    for key in ("pre_dispatch", "batch_size", "max_nbytes"):
        value = cfg.get(key)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            cfg[key] = int(value)
    return cfg


def submitit_kind(wrapped: Any) -> str:
    """``local`` or ``slurm``: which of the submitit plugin's launchers ``wrapped`` is (its public classes)."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

    if isinstance(wrapped, LocalLauncher):
        return "local"
    if isinstance(wrapped, SlurmLauncher):
        return "slurm"
    raise TypeError(f"{type(wrapped).__name__} is not one of the submitit plugin's launchers (local, slurm)")


def submitit_executor(wrapped: Any):
    """A submitit executor set up from a submitit plugin launcher's parameters, as that plugin does."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params, kind = dict(wrapped.params), submitit_kind(wrapped)
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init[f"{kind}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=kind, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"{kind}_{k}": v for k, v in params.items()})
    return executor


