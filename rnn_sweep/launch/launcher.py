"""rnn-sweep's sweep launcher: validate every job first, then train packs, not runs.

A Hydra launcher receives the whole job list (``launch(job_overrides,
initial_job_idx)``). :class:`PackingLauncher` wraps another launcher -- Hydra's
basic (in-process), joblib (``hydra/launcher=cores``), submitit local or Slurm --
named by its config field ``wrapped``, and for a sweep of rnn-sweep runs:

1. composes and validates every job before anything trains; one invalid
   combination refuses the whole sweep with the list of every invalid one (one
   line each), exit status 2, no run directory created;
2. groups the jobs into packs (:func:`rnn_sweep.run.packing.make_packs`, capped by
   ``max_pack_size`` and, when the config layer can estimate it, memory);
3. runs each pack as one unit of work of the wrapped launcher
   (:func:`rnn_sweep.launch.hydra_jobs.run_pack`): in this process, on joblib workers
   (one task per worker, packs that share a compiled program on the same worker:
   :func:`rnn_sweep.run.packing.assign_workers`), or one submitit (Slurm) job per pack.

For any other task function it *is* the wrapped launcher (setup and launch are
passed through), which is how it passes Hydra's launcher conformance suites.
Hydra only instantiates launchers from the ``hydra_plugins`` namespace package:
``hydra_plugins/rnn_sweep_launcher`` subclasses :class:`PackingLauncher` and calls
:func:`register_configs`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from rnn_sweep.launch import failures, hydra_private
from rnn_sweep.launch.compose import SweepComposer
from rnn_sweep.task.config import RunConfig
from rnn_sweep.run.core import RunOutcome
from rnn_sweep.launch.hydra_jobs import OUTCOME_ATTR, PACK_RECORD, PackedJob, job_records_dir, run_pack, run_packs
from rnn_sweep.run.packing import DEFAULT_MAX_PACK_SIZE, assign_workers, describe, make_packs
from rnn_sweep.launch.progress import Progress

log = logging.getLogger("rnn_sweep.launch.launcher")
BASIC = hydra_private.BASIC_LAUNCHER
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher."
MEMORY_SHARE = 0.8  # of a pack's memory (a Slurm job's mem_gb, or this machine's share): the rest is TF itself


def is_rnn_sweep_task(task_function: Optional[TaskFunction]) -> bool:
    """Whether ``task_function`` is rnn-sweep's training task (``rnn_sweep.launch.cli.run``, undecorated).

    Compared by source file and name, so ``python -m rnn_sweep.launch.cli`` (module
    ``__main__``) counts too, and without importing :mod:`rnn_sweep.launch.cli`: its
    ``@hydra.main(version_base=...)`` would change Hydra's defaults (e.g. whether
    jobs chdir) for whatever other app this launcher is running.
    """
    code = getattr(task_function, "__code__", None)
    cli_file = Path(__file__).resolve().with_name("cli.py")
    return code is not None and code.co_name == "run" and Path(code.co_filename).resolve() == cli_file


class PackingLauncher(Launcher):
    """Wraps the launcher ``wrapped``; packs rnn-sweep runs (see the module docstring).

    Args:
        wrapped: import path of the wrapped launcher class (its ``_target_``).
        max_pack_size: most runs per pack.
        pack_memory_gb: memory one pack may use (GB); None = the wrapped launcher's
            ``mem_gb`` (a Slurm job's allocation) or this machine's available
            memory shared among parallel workers.
        **params: the wrapped launcher's own settings (n_jobs, partition, ...).
    """

    def __init__(self, wrapped: str = BASIC, max_pack_size: int = DEFAULT_MAX_PACK_SIZE,
                 pack_memory_gb: Optional[float] = None, **params: Any) -> None:
        self.wrapped_target = str(wrapped)
        self.max_pack_size = int(max_pack_size)
        self.pack_memory_gb = pack_memory_gb
        self.params = params
        self.wrapped: Launcher = get_class(self.wrapped_target)(**params)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None
        self.progress = Progress(0)  # replaced per launch, when the number of runs is known

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.wrapped.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if is_rnn_sweep_task(task_function):
            ComposeOnce.install(hydra_context)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if not is_rnn_sweep_task(self.task_function):
            return self.wrapped.launch(job_overrides, initial_job_idx)
        assert self.config is not None and self.hydra_context is not None
        jobs = compose_jobs(self.hydra_context, self.config, job_overrides, initial_job_idx)
        rounds = check_job_dirs(jobs, str(self.config.hydra.sweep.dir))
        run_packs = self._dispatcher()
        if run_packs is None:  # a launcher we cannot hand packs to (e.g. ray): its own jobs, unpacked
            log.info("%s runs each job on its own (no packing)", self.wrapped_target)
            return self.wrapped.launch(job_overrides, initial_job_idx)
        if self.max_pack_size < 1:
            _refuse([f"hydra.launcher.max_pack_size={self.max_pack_size!r} is invalid: "
                     "must be a positive integer (>= 1)"], 0)
        self.progress = Progress(len(jobs))
        by_index: dict[int, JobReturn] = {}
        for members in rounds:  # one round, unless a job was asked twice (its copy then finds it finished)
            by_index.update(zip(members, self._launch_round([jobs[i] for i in members], run_packs)))
        returns = [by_index[i] for i in range(len(jobs))]
        # How each run ended came back with its JobReturn, from whichever process ran it.
        failures.JOB_FAILURES.extend((o.exit_code, o.error) for o in map(outcome_of, returns) if o.error is not None)
        return returns

    def _launch_round(self, jobs: list[PackedJob], run_packs: Callable) -> list[JobReturn]:
        """Pack ``jobs`` (distinct run directories) and hand the packs to the wrapped launcher."""
        assert self.config is not None
        packs = make_packs([j.run_cfg for j in jobs], self.max_pack_size, *self._memory_cap())
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Packing %d jobs into %s; sweep output dir: %s", len(jobs), describe(packs),
                 self.config.hydra.sweep.dir)
        for number, pack in enumerate(packs, 1):
            log.info("\tpack %d: %s", number, " | ".join(" ".join(filter_overrides(jobs[i].overrides)) or "-"
                                                         for i in pack))
        returns = run_packs([[jobs[i] for i in pack] for pack in packs])
        by_index = {i: ret for pack, rets in zip(packs, returns) for i, ret in zip(pack, rets)}
        return [by_index[i] for i in range(len(jobs))]

    # --- how packs reach the wrapped launcher's workers -----------------------------------

    def _dispatcher(self):
        if self.wrapped_target == BASIC:
            return self._in_process
        if self.wrapped_target == JOBLIB:
            return self._joblib
        if self.wrapped_target.startswith(SUBMITIT):
            return self._submitit
        return None

    def _in_process(self, packs: list[list[PackedJob]]) -> list[list[JobReturn]]:
        assert self.config is not None
        out = []
        for number, pack in enumerate(packs, 1):
            out.append(run_pack(pack, self.hydra_context.callbacks, self.task_function, label=f"{number}/{len(packs)}"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            self._report(pack, [outcome_of(ret).line() for ret in out[-1]])
        return out

    def _report(self, pack: list[PackedJob], lines: list[str]) -> None:
        """One progress line per run of a finished pack: ``[k/N]`` and its outcome's line, elapsed, ETA."""
        self.progress.pack_done(lines)

    def _joblib(self, packs: list[list[PackedJob]]) -> list[list[JobReturn]]:
        """Packs on worker processes: one task per worker, packs that share a program together.

        Each worker process compiles each program it meets once; dispatching pack by
        pack would make every worker compile every program (the 16-run slice of the
        article's grid on 2 workers: 4 compiles instead of 2). So packs are split
        into one chunk per worker (:func:`rnn_sweep.run.packing.assign_workers`) and the
        sweep process follows them pack by pack through their pack records
        (:class:`PackWatcher`), for the progress lines.
        """
        from joblib import Parallel, delayed

        cfg = joblib_parallel_args(self.wrapped.joblib)  # type: ignore[attr-defined]
        chunks = assign_workers([[j.run_cfg for j in pack] for pack in packs], self._parallel_workers())
        log.info("Joblib.Parallel(%s) is launching %d packs as %d tasks (packs sharing a compiled program "
                 "on the same worker)", ",".join(f"{k}={v}" for k, v in cfg.items()), len(packs), len(chunks))
        state = Singleton.get_state()
        labels = [f"{number}/{len(packs)}" for number in range(1, len(packs) + 1)]
        launch = f"{os.getpid()}-{time.time_ns()}"
        cfg["return_as"] = "generator"  # chunk by chunk, in order; progress comes from the watcher before
        out: dict[int, list[JobReturn]] = {}
        with PackWatcher(packs, launch, self._report) as watcher:
            results = Parallel(**cfg)(delayed(_run_chunk)(chunk, [packs[i] for i in chunk], self.hydra_context.callbacks,
                                                          self.task_function, state, [labels[i] for i in chunk],
                                                          launch)
                                      for chunk in chunks)
            for chunk, returns in results:
                out.update(zip(chunk, returns))
                watcher.finished(chunk, returns)
        return [out[i] for i in range(len(packs))]

    def _submitit(self, packs: list[list[PackedJob]]) -> list[list[JobReturn]]:
        executor = submitit_executor(self.wrapped)
        log.info("Submitit '%s' is launching %d packs, one job each; sweep output dir: %s",
                 submitit_kind(self.wrapped), len(packs), self.config.hydra.sweep.dir)
        runner = SubmititPack(self.hydra_context.callbacks, self.task_function)
        labels = [f"{number}/{len(packs)}" for number in range(1, len(packs) + 1)]
        state = Singleton.get_state()
        local = submitit_kind(self.wrapped) == "local"
        with _stderr_into(Path(executor.folder).parent / "controllers.log" if local else None):
            jobs = executor.map_array(runner, packs, labels, [state] * len(packs))
        out = []
        try:
            for pack, job in zip(packs, jobs):
                out.append(job.results()[0])
                self._report(pack, [outcome_of(ret).line() for ret in out[-1]])
        except BaseException:
            if local:  # interrupted (Ctrl-C, SIGTERM): each controller stops its pack's process
                for job in jobs:
                    job.cancel(check=False)
                _wait_until_done(jobs)
            raise
        return out

    def _memory_cap(self) -> tuple[Optional[int], Any]:
        """(bytes a pack's runs may add to one process, each run's share) for make_packs.

        A pack is one process: it pays the runtime's fixed cost (``config.BASE_BYTES``:
        Python, TensorFlow, compiled programs) once, and each member adds its own
        parameters, activations and data (``config.memory_terms``). Summing whole-run
        estimates would count the runtime once per member and, under a Slurm job's
        ``mem_gb``, leave every run alone in its pack.
        """
        from rnn_sweep.task.config import BASE_BYTES, memory_terms

        def member_bytes(cfg: RunConfig) -> int:
            return sum(memory_terms(cfg).values())

        if self.pack_memory_gb is not None:
            budget = float(self.pack_memory_gb) * 2**30
        elif self.params.get("mem_gb"):
            budget = float(self.params["mem_gb"]) * 2**30 * MEMORY_SHARE
        else:
            budget = available_memory() * MEMORY_SHARE / self._parallel_workers()
        return max(0, int(budget) - BASE_BYTES), member_bytes

    def _parallel_workers(self) -> int:
        if self.wrapped_target != JOBLIB:
            return 1
        n = int(self.params.get("n_jobs") or -1)
        cores = os.cpu_count() or 1
        return max(1, n if n > 0 else cores + 1 + n)


def _wait_until_done(jobs: Sequence[Any], timeout_s: float = 30.0) -> None:
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


def _run_chunk(chunk: list[int], packs: list[list[PackedJob]], callbacks: Any, task_function: Any,
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


def outcome_of(ret: JobReturn) -> RunOutcome:
    """How the run of a JobReturn made by :func:`rnn_sweep.launch.hydra_jobs.run_pack` ended."""
    return getattr(ret, OUTCOME_ATTR)


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
def _stderr_into(path: Optional[Path]) -> Iterator[None]:
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


def available_memory() -> int:
    """Bytes of memory available to new work on this machine (MemAvailable), or all of it."""
    from rnn_sweep.task.config import meminfo_available

    return meminfo_available() or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# --- validation before anything runs ---------------------------------------------------------

def compose_jobs(hydra_context: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]],
                 initial_job_idx: int) -> list[PackedJob]:
    """Compose and validate every job; refuse the sweep (exit 2) listing every invalid one."""
    jobs, invalid = [], []
    # Name a job by what varies across the sweep (num_steps=0 state_size=4), not by the
    # overrides every job shares.
    shared = set.intersection(*(set(o) for o in job_overrides)) if len(job_overrides) > 1 else set()
    for k, overrides in enumerate(job_overrides):
        idx = initial_job_idx + k
        try:
            cfg = ComposeOnce.take(hydra_context, config, overrides)
            with open_dict(cfg):
                cfg.hydra.job.id = idx
                cfg.hydra.job.num = idx
            jobs.append(PackedJob(idx, list(overrides), cfg, run_config(cfg)))
        except Exception as err:  # noqa: BLE001 -- every reason is collected, then reported together
            label = " ".join(o for o in filter_overrides(overrides) if o not in shared) or "(no overrides)"
            invalid.append(f"{label}: {' '.join(str(err).split())}")
    if invalid:
        _refuse(invalid, len(job_overrides))
    log.debug("composed %d jobs (%d reused from the sweeper's validation)", len(jobs), ComposeOnce.hits)
    return jobs


class ComposeOnce:
    """Compose each job once, and most of them cheaply: the launcher reuses what the sweeper composed.

    Hydra's sweeper composes every job of a batch to validate it, then a launcher
    composes each again. Installed on this sweep's config loader only (rnn-sweep
    tasks), this hook composes the sweeper's jobs through a
    :class:`rnn_sweep.launch.compose.SweepComposer` (Hydra composes one base per set of
    config-group choices; value overrides are applied to a copy: ~0.09 s -> ~0.01 s
    a job, the 300 jobs of ``experiment=r2rt_grid`` ~40 s -> ~5 s) and keeps them
    for the launcher; a job missing from the cache is composed the same way.
    """

    hits = 0  # jobs reused in this process (for the debug log and tests)

    def __init__(self, original: Any, loader: Any) -> None:
        self.original, self.loader, self.cache = original, loader, {}
        self.composers: dict[int, SweepComposer] = {}

    def compose(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> DictConfig:
        """The job's config (not cached)."""
        composer = self.composers.get(id(master_config))
        if composer is None or composer.master is not master_config:
            composer = self.composers[id(master_config)] = SweepComposer(self.loader, master_config, self.original)
        return composer.compose(list(sweep_overrides))

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        cfg = self.compose(master_config, sweep_overrides)
        self.cache[(id(master_config), tuple(sweep_overrides))] = cfg
        return cfg

    @classmethod
    def install(cls, hydra_context: HydraContext) -> None:
        """Route ``hydra_context.config_loader.load_sweep_config`` through this hook (instance attribute)."""
        hydra_private.route_sweep_composition(hydra_context.config_loader, cls)

    @classmethod
    def take(cls, hydra_context: HydraContext, master: DictConfig, overrides: Sequence[str]) -> DictConfig:
        """The job's composed config: from the cache (removed from it), else composed now."""
        compose = hydra_context.config_loader.load_sweep_config
        if isinstance(compose, cls):
            hit = compose.cache.pop((id(master), tuple(overrides)), None)
            if hit is not None:
                cls.hits += 1
                return hit
            return compose.compose(master, overrides)
        return compose(master, list(overrides))


def check_job_dirs(jobs: list[PackedJob], sweep_dir: str) -> list[list[int]]:
    """Refuse the sweep (exit 2, one line) unless every job writes its own safe run directory.

    Before anything trains: two jobs of different configs that map to one run
    directory (``hydra.sweep.subdir=onedir``, a pattern without a swept key) or
    to nested ones, a job writing the sweep directory itself, and a job whose
    directory holds files rnn-sweep did not write (or is a link) are refused,
    naming the jobs' overrides and the directory. Returns the rounds of
    :func:`rnn_sweep.run.packing.dir_rounds` (positions in ``jobs``).
    """
    from rnn_sweep.run.packing import dir_rounds
    from rnn_sweep.launch.hydra_jobs import job_output_dir
    from rnn_sweep.run.records import UnsafeDirectory, check_job_dir, identity

    dirs = [os.path.realpath(job_output_dir(j.config)) for j in jobs]  # two names for one folder are one
    ids = [json.dumps(identity(j.run_cfg), sort_keys=True) for j in jobs]
    rounds, clashes, misplaced = dir_rounds(dirs, ids, [os.path.realpath(sweep_dir)])
    name = _job_labels(jobs)
    if clashes:
        a, b = clashes[0]
        where = (f"run directory {dirs[a]}" if dirs[a] == dirs[b]
                 else f"run directories {dirs[a]} and {dirs[b]}, one inside the other")
        more = f" (and {len(clashes) - 1} more such pair(s))" if len(clashes) > 1 else ""
        _refuse([f"jobs '{name[a]}' and '{name[b]}' would write the same {where}{more}: each job needs its "
                 "own directory, so hydra.sweep.subdir must tell every job apart (include every swept key, "
                 "e.g. the default ${hydra.job.override_dirname}); nothing was trained"], 0)
    if misplaced:
        i = misplaced[0]
        _refuse([f"job '{name[i]}' would write its run into {dirs[i]}, which is the sweep directory "
                 f"{os.path.realpath(sweep_dir)} or holds it (hydra.sweep.subdir must name a folder inside it); "
                 "nothing was trained"], 0)
    unsafe = []
    for i, d in enumerate(dirs):
        try:
            check_job_dir(d)
        except UnsafeDirectory as err:
            unsafe.append(f"job '{name[i]}': {err}")
    if unsafe:
        more = f" (and {len(unsafe) - 1} more job(s) like it)" if len(unsafe) > 1 else ""
        _refuse([f"{unsafe[0]}{more}; nothing was trained"], 0)
    return rounds


def _job_labels(jobs: list[PackedJob]) -> list[str]:
    """Each job's overrides that are not shared by every job (what tells it apart), or all of them."""
    shared = set.intersection(*(set(j.overrides) for j in jobs)) if len(jobs) > 1 else set()
    return [" ".join(o for o in filter_overrides(j.overrides) if o not in shared)
            or " ".join(filter_overrides(j.overrides)) or "(no overrides)" for j in jobs]


def run_config(cfg: DictConfig) -> RunConfig:
    """The validated RunConfig of a composed sweep job (its task part; the hydra node is never resolved,
    so validating creates no directory)."""
    from rnn_sweep.launch.hydra_glue import to_run_config

    task = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    return to_run_config(task)


def _refuse(reasons: list[str], total: int) -> None:
    """Print why the sweep cannot start, one line per invalid combination, and exit 2."""
    if total:
        head = (f"{len(reasons)} of {total} sweep combination{'s' if total != 1 else ''} "
                f"{'is' if len(reasons) == 1 else 'are'} invalid; nothing was trained (fix or remove "
                f"{'it' if len(reasons) == 1 else 'them'} and rerun):")
        print(f"rnn-sweep: error: {head}", file=sys.stderr)
        for line in reasons:
            print(f"  {line}", file=sys.stderr)
    else:
        print(f"rnn-sweep: error: {reasons[0]}", file=sys.stderr)
    sys.exit(2)


# --- configs: one per wrapped launcher, in Hydra's ConfigStore group hydra/launcher ------------

def _conf_class(name: str, base: type, wrapped: str, target: str) -> type:
    """The wrapped launcher's structured config plus this launcher's fields, under ``target``."""
    return dataclasses.make_dataclass(name, [
        ("_target_", str, dataclasses.field(default=target)),
        ("wrapped", str, dataclasses.field(default=wrapped)),
        ("max_pack_size", int, dataclasses.field(default=DEFAULT_MAX_PACK_SIZE)),
        ("pack_memory_gb", Optional[float], dataclasses.field(default=None)),
    ], bases=(base,))


def register_configs(target: str) -> list[str]:
    """Store ``rnn_sweep`` (wrapping basic) and ``rnn_sweep_<plugin>`` for each installed plugin.

    Args:
        target: import path of the launcher class Hydra instantiates (in ``hydra_plugins``).

    Returns:
        The names stored in the ``hydra/launcher`` group.
    """
    bases: list[tuple[str, type, str]] = [("rnn_sweep", hydra_private.basic_launcher_conf(), BASIC)]
    try:
        from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf

        bases.append(("rnn_sweep_joblib", JobLibLauncherConf, JOBLIB))
    except ImportError:
        pass
    try:
        from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

        bases.append(("rnn_sweep_submitit_local", LocalQueueConf, SUBMITIT + "LocalLauncher"))
        bases.append(("rnn_sweep_submitit_slurm", SlurmQueueConf, SUBMITIT + "SlurmLauncher"))
    except ImportError:
        pass
    for name, base, wrapped in bases:
        node = _conf_class(f"{base.__name__}Packing", base, wrapped, target)
        ConfigStore.instance().store(group="hydra/launcher", name=name, node=node, provider="rnn_sweep")
    return [name for name, _, _ in bases]
