"""Grouping a sweep's runs into packs: runs that can share one compiled program.

Pure functions on :class:`~rnn_sweep.task.config.RunConfig` (no Hydra, no TensorFlow),
used by the sweep launcher (:mod:`rnn_sweep.launch.launcher`).

A pack is a list of job indices whose configurations differ only in
:data:`PER_REPLICA` keys (they enter the compiled program as per-replica tensors:
the seed through the data and initial weights, the optimizer's numeric
hyper-parameters as [K] tensors; ``num_steps`` splits the pack into groups, one
engine call each, that share data, held-out measurement and -- in TF style, where n
is a runtime number -- the compiled program) and :data:`EXECUTION_ONLY` keys (they do
not change what a run computes). That is the precondition of
``rnn_sweep.run.train.train_pack``; everything else (backend, cell, style,
state_size, data rule, epochs, batch size, optimizer name...) is the pack key: a
sweep over n and seeds makes one pack per state size, cut only by the size and
memory caps (:func:`plan_packs` says where and why). A ``model.backend=keras`` run (model.fit, not packed) and a
``train.replicas`` K > 1 run (already K seeds in one job) always run alone.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Optional, Sequence

from rnn_sweep.task.config import RunConfig
from rnn_sweep.model.buffers import buffer_steps, block_rows
from rnn_sweep.run.records import EXECUTION_KEYS

PER_REPLICA = ("seed", "num_steps", "train.optimizer.lr", "train.optimizer.initial_accumulator", "train.optimizer.beta1",
               "train.optimizer.beta2", "train.optimizer.epsilon",
               # each member judges its own checkpoints (rnn_sweep.run.train.MemberLog.judge)
               "train.stop_patience", "train.stop_tolerance")
EXECUTION_ONLY = EXECUTION_KEYS
DEFAULT_MAX_PACK_SIZE = 32


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def packable(cfg: RunConfig) -> bool:
    """Whether ``cfg`` may share a pack with other runs (keras model.fit and replicas > 1 may not)."""
    return cfg.model.backend != "keras" and cfg.train.replicas == 1


def pack_key(cfg: RunConfig) -> Optional[str]:
    """What runs must share to train as one pack, as a canonical JSON string; None: runs alone.

    Two configurations with equal keys differ at most in :data:`PER_REPLICA` and
    :data:`EXECUTION_ONLY` keys.
    """
    if not packable(cfg):
        return None
    return json.dumps(shared_settings(cfg), sort_keys=True)


def shared_settings(cfg: RunConfig) -> dict:
    """Every setting of ``cfg`` that all members of its pack must share: {dotted key: value}."""
    flat = _flat(json.loads(json.dumps(dataclasses.asdict(cfg))))
    return {k: v for k, v in flat.items() if k not in PER_REPLICA + EXECUTION_ONLY}


def make_packs(cfgs: Sequence[RunConfig], max_pack_size: int = DEFAULT_MAX_PACK_SIZE,
               memory_budget: Optional[int] = None,
               estimate: Optional[Callable[[RunConfig], int]] = None) -> list[list[int]]:
    """Group run configurations into packs of job indices (:func:`plan_packs` without the reasons).

    Args:
        cfgs: the sweep's validated run configurations, in job order.
        max_pack_size: most runs per pack (>= 1).
        memory_budget: bytes one pack may use; None = no memory cap.
        estimate: bytes a run needs (e.g. ``rnn_sweep.task.config.estimate_memory_bytes``).

    Returns:
        Packs as lists of indices into ``cfgs``; every index appears exactly once.
    """
    return [pack for pack, _ in plan_packs(cfgs, max_pack_size, memory_budget, estimate)]


def plan_packs(cfgs: Sequence[RunConfig], max_pack_size: int = DEFAULT_MAX_PACK_SIZE,
               memory_budget: Optional[int] = None,
               estimate: Optional[Callable[[RunConfig], int]] = None) -> list[tuple[list[int], str]]:
    """Group run configurations into packs, each with why it is not part of a larger one.

    Runs with equal :func:`pack_key` are grouped in the order they first appear (so
    packs follow the sweep's order); inside a group, runs with the same ``num_steps``
    stay together (one engine call, one program shape), in the order their n first
    appears. A group is cut into packs only by the caps: at most ``max_pack_size``
    runs and, when ``estimate`` and ``memory_budget`` are given, at most
    ``memory_budget`` bytes in total (a run whose estimate alone exceeds the budget
    still gets a pack of its own: whether it fits at all is the config validation's
    call, not the packer's). Members of other n never cost more together than apart
    (each n trains in its own engine call; they share data, held-out passes and the
    compiled program), so no speed rule splits a pack.

    Returns:
        [(job indices, reason)]: reason ``""`` for a whole group, else one line for the
        launcher's plan: ``"runs alone: ..."`` or ``"split by max_pack_size 32"`` /
        ``"split by the memory cap (1.2 GB per pack)"``. Every index appears exactly once.
    """
    if max_pack_size < 1:
        raise ValueError(f"max_pack_size={max_pack_size!r} is invalid: must be a positive integer (>= 1)")
    groups: dict[str, list[int]] = {}
    order: list[tuple[list[int], str]] = []
    for i, cfg in enumerate(cfgs):
        key = pack_key(cfg)
        if key is None:
            why = "model.backend=keras trains by model.fit" if cfg.model.backend == "keras" else \
                f"train.replicas={cfg.train.replicas} is a pack of its own"
            order.append(([i], f"runs alone: {why}"))
            continue
        if key not in groups:
            groups[key] = []
            order.append((groups[key], ""))
        groups[key].append(i)
    packs = []
    for group, reason in order:
        packs.extend(_chunks(group, cfgs, max_pack_size, memory_budget, estimate) if not reason else [(group, reason)])
    return packs


def _by_num_steps(group: list[int], cfgs: Sequence[RunConfig]) -> list[list[int]]:
    """The group's runs by num_steps, each n's runs in sweep order, the n in order of first appearance."""
    out: dict[int, list[int]] = {}
    for i in group:
        out.setdefault(cfgs[i].num_steps, []).append(i)
    return list(out.values())


def _chunks(group: list[int], cfgs: Sequence[RunConfig], max_size: int, budget: Optional[int],
            estimate: Optional[Callable[[RunConfig], int]]) -> list[tuple[list[int], str]]:
    """Cut one group into chunks within the size and memory caps, keeping each n's runs together
    where they fit; every chunk but the last says which cap ended it."""
    def need(i: int) -> int:
        return int(estimate(cfgs[i])) if estimate is not None and budget is not None else 0

    chunks: list[tuple[list[int], str]] = []
    current: list[int] = []
    used = 0

    def cut(reason: str) -> None:
        nonlocal current, used
        chunks.append((current, reason))
        current, used = [], 0

    for same_n in _by_num_steps(group, cfgs):
        total = sum(need(i) for i in same_n)
        if current and (len(current) + len(same_n) > max_size or (budget is not None and used + total > budget)):
            cut(_cap_reason(len(current) + len(same_n) > max_size, max_size, budget))
        for i in same_n:  # an n with more runs than one pack holds is cut inside
            over_size, over_memory = len(current) >= max_size, budget is not None and used + need(i) > budget
            if current and (over_size or over_memory):
                cut(_cap_reason(over_size, max_size, budget))
            current.append(i)
            used += need(i)
    if current:
        chunks.append((current, ""))
    if len(chunks) > 1:  # the last chunk is what the caps left over
        chunks[-1] = (chunks[-1][0], chunks[-2][1])
    return chunks


def _cap_reason(size: bool, max_size: int, budget: Optional[int]) -> str:
    if size:
        return f"split by max_pack_size {max_size}"
    return f"split by the memory cap ({budget / 2**30:.2g} GB per pack)"


# --- which worker trains which packs (hydra/launcher=cores) ----------------------------------

# Trace + XLA compile of one training program and its evaluation in a worker: 1.0 s alone on
# the 2-core dev VM, 1.4-1.9 s while another worker imports or compiles too.
COMPILE_SECONDS = 1.5
RUN_OVERHEAD_SECONDS = 0.05  # per run: Hydra's job records, data, evaluation, summary


def program_key(cfg: RunConfig, size: int) -> str:
    """What decides the compiled program a pack of ``size`` runs like ``cfg`` trains with.

    The pack key (:func:`shared_settings`) and the pack size, with num_steps replaced
    by the TF-style buffer size (:func:`buffer_steps`: in TF style every n up to it
    shares one program) or, for true BPTT on the scratch cell, its block rows
    (:func:`block_rows`); true BPTT on a Keras cell is built per n. Runs that are never
    packed get a key of their own.
    """
    if not packable(cfg):
        return json.dumps({"alone": dataclasses.asdict(cfg)}, sort_keys=True, default=str)
    shared = shared_settings(cfg)
    if cfg.truncation.style == "tf":
        shared["num_steps"] = f"buffer {buffer_steps(cfg.num_steps)}"
    elif cfg.model.backend == "scratch":
        shared["num_steps"] = f"block {block_rows(cfg.num_steps)}"
    else:
        shared["num_steps"] = cfg.num_steps
    return json.dumps({**shared, "pack size": size}, sort_keys=True)


def pack_programs(pack: Sequence[RunConfig]) -> str:
    """What decides the compiled programs a pack trains with: its groups' :func:`program_key` s
    (one group per num_steps), as one canonical string. In TF style a sweep's packs of equal
    group sizes share it whatever their n (up to the buffer size)."""
    sizes: dict[int, int] = {}
    for cfg in pack:
        sizes[cfg.num_steps] = sizes.get(cfg.num_steps, 0) + 1
    first = {cfg.num_steps: cfg for cfg in reversed(pack)}
    return json.dumps(sorted({program_key(first[n], k) for n, k in sizes.items()}))


def pack_cost(pack: Sequence[RunConfig]) -> float:
    """:func:`pack_seconds` of a pack whose members may differ in num_steps: the sum over its runs."""
    return sum(pack_seconds(cfg, 1) for cfg in pack)


def pack_seconds(cfg: RunConfig, size: int) -> float:
    """A rough guess of a pack's training seconds on one core, once its program is compiled.

    Only for balancing packs across workers (:func:`assign_workers`): measured on
    the 2-core dev VM, scratch RNN in TF style, 1M steps per replica take about
    0.03 s + 0.0002 s * d^2 (d=4: 0.04 s, d=32: 0.23 s); true BPTT recomputes
    about n/2 cells per step; GRU and LSTM cells cost about 3x and 4x an RNN cell.
    """
    d, n = cfg.state_size, cfg.num_steps
    per_million = (0.03 + 0.0002 * d * d) * {"rnn": 1.0, "gru": 3.0, "lstm": 4.0}.get(cfg.model.cell, 1.0)
    if cfg.truncation.style == "true":
        per_million *= 1 + n / 2
    steps = cfg.data.length * cfg.train.epochs + cfg.data.eval_length
    return size * (steps / 1e6 * per_million + RUN_OVERHEAD_SECONDS)


def assign_workers(packs: Sequence[Sequence[RunConfig]], workers: int) -> list[list[int]]:
    """Split packs (each a list of run configs) among ``workers`` processes: pack indices per worker.

    Each worker compiles every program it meets once (its own cache), so packs
    that share a program (:func:`program_key`) should go to the same worker. Two
    plans are estimated (:func:`pack_seconds` per pack, :data:`COMPILE_SECONDS`
    per program a worker compiles) and the one that finishes sooner is taken:
    whole programs, longest first, each to the least loaded worker (no program is
    compiled twice), and the packs ordered by program and cut into consecutive
    chunks of about equal time (a program with more than one worker's share of
    the work is split). Every pack index appears exactly once; no chunk is empty.
    """
    if workers < 1:
        raise ValueError(f"workers={workers!r} is invalid: must be a positive integer (>= 1)")
    keys = [pack_programs(p) for p in packs]
    cost = [pack_cost(p) for p in packs]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    heaviest = {k: max(c for c, kk in zip(cost, keys) if kk == k) for k in first}
    # programs with the longest packs first (the short ones even out the last chunks), then sweep order
    order = sorted(range(len(packs)), key=lambda i: (-heaviest[keys[i]], first[keys[i]], i))
    plans = [_whole_programs(order, keys, cost, workers), _consecutive_chunks(order, keys, first, cost, workers)]

    def finish(chunks: list[list[int]]) -> float:
        return max(sum(cost[i] for i in c) + COMPILE_SECONDS * len({keys[i] for i in c}) for c in chunks)

    return min(plans, key=finish)  # on a tie, the first: no program compiled twice


def _whole_programs(order: list[int], keys: list[str], cost: list[float], workers: int) -> list[list[int]]:
    """Each program's packs to one worker: programs by total time, longest first, to the least loaded."""
    programs: dict[str, list[int]] = {}
    for i in order:
        programs.setdefault(keys[i], []).append(i)
    total = {k: COMPILE_SECONDS + sum(cost[i] for i in members) for k, members in programs.items()}
    chunks: list[list[int]] = [[] for _ in range(min(workers, len(programs)))]
    load = [0.0] * len(chunks)
    for k in sorted(programs, key=lambda k: -total[k]):  # stable: equal totals keep their order
        w = load.index(min(load))
        chunks[w].extend(programs[k])
        load[w] += total[k]
    return [c for c in chunks if c]


def _consecutive_chunks(order: list[int], keys: list[str], first: dict[str, int], cost: list[float],
                        workers: int) -> list[list[int]]:
    """Packs in ``order`` cut into at most ``workers`` consecutive chunks of about equal time.

    ``first``: each program key's first pack index (where its first compile is counted).
    """
    left = sum(cost) + COMPILE_SECONDS * len(first)  # not yet placed: packs, first compile of each program
    chunks: list[list[int]] = [[]]
    compiled: set[str] = set()  # programs the current chunk compiles
    spent = 0.0  # the current chunk's estimate
    for i in order:
        extra = cost[i] + (0.0 if keys[i] in compiled else COMPILE_SECONDS)
        split = COMPILE_SECONDS if keys[i] in compiled else 0.0  # a program cut in two is compiled twice
        share = (spent + left + split) / (workers - len(chunks) + 1)
        if chunks[-1] and len(chunks) < workers and spent + extra / 2 > share:
            chunks.append([])
            compiled, spent = set(), 0.0
            extra = cost[i] + COMPILE_SECONDS
        left -= cost[i] + (COMPILE_SECONDS if keys[i] not in compiled and first[keys[i]] == i else 0.0)
        chunks[-1].append(i)
        compiled.add(keys[i])
        spent += extra
    return [c for c in chunks if c]


def describe(packs: Sequence[Sequence[int]]) -> str:
    """One line for the log: ``8 packs (sizes 2, 2, ...)`` or ``2 packs (2 x 4)`` when all are equal."""
    sizes = [len(p) for p in packs]
    if sizes and len(set(sizes)) == 1:
        return f"{len(packs)} pack{'s' if len(packs) != 1 else ''} ({len(packs)} x {sizes[0]})"
    return f"{len(packs)} packs (sizes {', '.join(map(str, sizes))})"


def dir_rounds(dirs: Sequence[str], identities: Sequence[str],
               reserved: Sequence[str] = ()) -> tuple[list[list[int]], list[tuple[int, int]], list[int]]:
    """Check that a sweep's jobs write distinct run directories; split exact duplicates into rounds.

    Args:
        dirs: each job's run directory (absolute, normalised).
        identities: each job's run identity (:func:`rnn_sweep.run.records.identity`, as JSON);
            two jobs with the same directory and identity are the same run asked twice
            (Optuna may suggest one point twice in a batch).
        reserved: directories no job may write or contain (the sweep directory).

    Returns:
        ``(rounds, clashes, misplaced)``: rounds of job indices in which no two jobs share
        a directory (the k-th copy of a duplicated job goes to round k; a later round
        finds the run finished and skips it); pairs of jobs whose directories are
        equal with different configs, or nested (one inside the other, where a
        ``train.replicas`` job's ``seed=<s>/`` records or another run would mix);
        jobs whose directory is a reserved one or one of its parents.
    """
    import os

    first: dict[str, int] = {}
    copies: dict[str, int] = {}
    rounds: list[list[int]] = []
    clashes: list[tuple[int, int]] = []
    for i, d in enumerate(dirs):
        if d in first and identities[first[d]] != identities[i]:
            clashes.append((first[d], i))
            continue
        k = copies.get(d, 0)
        copies[d] = k + 1
        first.setdefault(d, i)
        while len(rounds) <= k:
            rounds.append([])
        rounds[k].append(i)
    for d, i in first.items():
        parent = os.path.dirname(d)
        while parent and parent != os.path.dirname(parent):
            if parent in first:
                clashes.append((first[parent], i))
                break
            parent = os.path.dirname(parent)
    reserved_set = {os.path.normpath(r) for r in reserved}
    misplaced = [i for d, i in first.items()
                 if any(r == d or r.startswith(d.rstrip(os.sep) + os.sep) for r in reserved_set)]
    return rounds, sorted(clashes), misplaced
