"""Validation before anything runs: every job composed and checked, its run directory its own.

One invalid combination refuses the whole sweep with the list of every invalid
one (one line each), exit status 2, before any run directory is created.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Sequence

from hydra.core.utils import filter_overrides
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict

from rnn_sweep.launch.compose import ComposeOnce
from rnn_sweep.launch.hydra_jobs import PackedJob
from rnn_sweep.task.config import RunConfig

log = logging.getLogger("rnn_sweep.launch.launcher")


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
        refuse_sweep(invalid, len(job_overrides))
    log.debug("composed %d jobs (%d reused from the sweeper's validation)", len(jobs), ComposeOnce.hits)
    return jobs


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
        refuse_sweep([f"jobs '{name[a]}' and '{name[b]}' would write the same {where}{more}: each job needs its "
                 "own directory, so hydra.sweep.subdir must tell every job apart (include every swept key, "
                 "e.g. the default ${hydra.job.override_dirname}); nothing was trained"], 0)
    if misplaced:
        i = misplaced[0]
        refuse_sweep([f"job '{name[i]}' would write its run into {dirs[i]}, which is the sweep directory "
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
        refuse_sweep([f"{unsafe[0]}{more}; nothing was trained"], 0)
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


def refuse_sweep(reasons: list[str], total: int) -> None:
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


