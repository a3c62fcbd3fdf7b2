"""rnn-sweep's sweep launcher: validate every job first, then train packs, not runs.

A Hydra launcher receives the whole job list (``launch(job_overrides,
initial_job_idx)``). :class:`PackingLauncher` wraps another launcher -- Hydra's
basic (in-process), joblib (``hydra/launcher=cores``), submitit local or Slurm --
named by its config field ``wrapped``, and for a sweep of rnn-sweep runs:

1. composes and validates every job before anything trains
   (:mod:`rnn_sweep.launch.validate`); one invalid combination refuses the whole
   sweep with the list of every invalid one (one line each), exit status 2, no
   run directory created;
2. groups the jobs into packs (:func:`rnn_sweep.run.packing.make_packs`, capped by
   ``max_pack_size`` and, when the config layer can estimate it, memory);
3. runs each pack as one unit of work of the wrapped launcher
   (:func:`rnn_sweep.launch.hydra_jobs.run_pack`, each member through Hydra's
   ``run_job``): in this process, on joblib workers (one task per worker, packs
   that share a compiled program on the same worker:
   :func:`rnn_sweep.run.packing.assign_workers`), or one submitit (Slurm) job per
   pack (:mod:`rnn_sweep.launch.workers`).

For any other task function it *is* the wrapped launcher (setup and launch are
passed through), which is how it passes Hydra's launcher conformance suites.
Hydra only instantiates launchers from the ``hydra_plugins`` namespace package:
``hydra_plugins/rnn_sweep_launcher`` subclasses :class:`PackingLauncher` and calls
:func:`register_configs`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_class
from omegaconf import DictConfig

from rnn_sweep.launch import failures, hydra_private
from rnn_sweep.launch.compose import ComposeOnce
from rnn_sweep.task.config import RunConfig
from rnn_sweep.launch.hydra_jobs import PackedJob, for_sweeper, outcome_of, run_pack
from rnn_sweep.launch.validate import refuse_sweep, check_job_dirs, compose_jobs
from rnn_sweep.launch.workers import (PackWatcher, SubmititPack, run_chunk, stderr_into, wait_until_done,
                                     joblib_parallel_args, submitit_executor, submitit_kind)
from rnn_sweep.run.packing import DEFAULT_MAX_PACK_SIZE, assign_workers, describe, plan_packs
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
            refuse_sweep([f"hydra.launcher.max_pack_size={self.max_pack_size!r} is invalid: "
                     "must be a positive integer (>= 1)"], 0)
        self.progress = Progress(len(jobs))
        by_index: dict[int, JobReturn] = {}
        for members in rounds:  # one round, unless a job was asked twice (its copy then finds it finished)
            by_index.update(zip(members, self._launch_round([jobs[i] for i in members], run_packs)))
        returns = [by_index[i] for i in range(len(jobs))]
        # How each run ended came back with its JobReturn, from whichever process ran it.
        failures.JOB_FAILURES.extend((o.exit_code, o.error) for o in map(outcome_of, returns) if o.error is not None)
        return [for_sweeper(ret) for ret in returns]

    def _launch_round(self, jobs: list[PackedJob], run_packs: Callable) -> list[JobReturn]:
        """Pack ``jobs`` (distinct run directories) and hand the packs to the wrapped launcher."""
        assert self.config is not None
        plan = self._plan([j.run_cfg for j in jobs])
        packs = [pack for pack, _ in plan]
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("Packing %d jobs into %s; sweep output dir: %s", len(jobs), describe(packs),
                 self.config.hydra.sweep.dir)
        for number, (pack, reason) in enumerate(plan, 1):
            log.info("\tpack %d%s: %s", number, f" ({reason})" if reason else "",
                     " | ".join(" ".join(filter_overrides(jobs[i].overrides)) or "-" for i in pack))
        returns = run_packs([[jobs[i] for i in pack] for pack in packs])
        by_index = {i: ret for pack, rets in zip(packs, returns) for i, ret in zip(pack, rets)}
        return [by_index[i] for i in range(len(jobs))]

    def _plan(self, cfgs: list[RunConfig]) -> list[tuple[list[int], str]]:
        """:func:`rnn_sweep.run.packing.plan_packs`, and with joblib workers at least one pack per worker.

        A pack holds every num_steps of a state size, so a small sweep can be one pack,
        which would leave all but one worker idle; the cap on a pack's size is then
        lowered until every worker gets a pack (a cap never splits one n's runs when
        they fit together), and the plan says so.
        """
        plan = plan_packs(cfgs, self.max_pack_size, *self._memory_cap())
        workers = self._parallel_workers()
        if workers == 1 or len(plan) >= workers or len(cfgs) < workers:
            return plan
        cap = min(self.max_pack_size, -(-len(cfgs) // workers))
        while cap > 1 and len(plan) < workers:
            plan = plan_packs(cfgs, cap, *self._memory_cap())
            cap -= 1
        share = f"split so that each of the {workers} joblib workers gets a pack"
        return [(pack, share if reason.startswith("split by max_pack_size") else reason) for pack, reason in plan]

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
        cfg["n_jobs"] = len(chunks)  # one task per worker: a worker without one would only sit idle
        log.info("Joblib.Parallel(%s) is launching %d packs as %d tasks (packs sharing a compiled program "
                 "on the same worker)", ",".join(f"{k}={v}" for k, v in cfg.items()), len(packs), len(chunks))
        state = Singleton.get_state()
        labels = [f"{number}/{len(packs)}" for number in range(1, len(packs) + 1)]
        launch = f"{os.getpid()}-{time.time_ns()}"
        cfg["return_as"] = "generator"  # chunk by chunk, in order; progress comes from the watcher before
        out: dict[int, list[JobReturn]] = {}
        with PackWatcher(packs, launch, self._report) as watcher:
            results = Parallel(**cfg)(delayed(run_chunk)(chunk, [packs[i] for i in chunk], self.hydra_context.callbacks,
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
        with stderr_into(Path(executor.folder).parent / "controllers.log" if local else None):
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
                wait_until_done(jobs)
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


def available_memory() -> int:
    """Bytes of memory available to new work on this machine (MemAvailable), or all of it."""
    from rnn_sweep.task.config import meminfo_available

    return meminfo_available() or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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
