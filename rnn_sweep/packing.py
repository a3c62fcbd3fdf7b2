"""Grouping a sweep's runs into packs: runs that can share one compiled program.

Pure functions on :class:`~rnn_sweep.config.RunConfig` (no Hydra, no TensorFlow),
used by the sweep launcher (:mod:`rnn_sweep.launcher`).

A pack is a list of job indices whose configurations differ only in
:data:`PER_REPLICA` keys (they enter the compiled program as per-replica tensors:
the seed through the data and initial weights, the optimizer's numeric
hyper-parameters as [K] tensors) and :data:`EXECUTION_ONLY` keys (they do not
change what a run computes). That is the precondition of
``rnn_sweep.train.train_pack``; everything else (backend, cell, style,
num_steps, state_size, data rule, epochs, batch size, optimizer name...) is the
pack key. A ``model.backend=keras`` run (model.fit, not packed) and a
``train.replicas`` K > 1 run (already K seeds in one job) always run alone.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Optional, Sequence

from rnn_sweep.config import RunConfig
from rnn_sweep.records import EXECUTION_KEYS

PER_REPLICA = ("seed", "train.optimizer.lr", "train.optimizer.initial_accumulator", "train.optimizer.beta1",
               "train.optimizer.beta2", "train.optimizer.epsilon")
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
    """Group run configurations into packs of job indices.

    Runs with equal :func:`pack_key` are grouped in the order they first appear
    (so packs, and the runs inside them, follow the sweep's order), then cut into
    chunks of at most ``max_pack_size`` runs and, when ``estimate`` and
    ``memory_budget`` are given, of at most ``memory_budget`` bytes in total
    (a run whose estimate alone exceeds the budget still gets a pack of its own:
    whether it fits at all is the config validation's call, not the packer's).

    Args:
        cfgs: the sweep's validated run configurations, in job order.
        max_pack_size: most runs per pack (>= 1).
        memory_budget: bytes one pack may use; None = no memory cap.
        estimate: bytes a run needs (e.g. ``rnn_sweep.config.estimate_memory_bytes``).

    Returns:
        Packs as lists of indices into ``cfgs``; every index appears exactly once.
    """
    if max_pack_size < 1:
        raise ValueError(f"max_pack_size={max_pack_size!r} is invalid: must be a positive integer (>= 1)")
    groups: dict[str, list[int]] = {}
    order: list[list[int]] = []
    for i, cfg in enumerate(cfgs):
        key = pack_key(cfg)
        if key is None:
            order.append([i])
            continue
        if key not in groups:
            groups[key] = []
            order.append(groups[key])
        groups[key].append(i)
    packs = []
    for group in order:
        packs.extend(_chunks(group, cfgs, max_pack_size, memory_budget, estimate))
    return packs


def _chunks(group: list[int], cfgs: Sequence[RunConfig], max_size: int, budget: Optional[int],
            estimate: Optional[Callable[[RunConfig], int]]) -> list[list[int]]:
    """Cut one group into consecutive chunks within the size and memory caps."""
    chunks: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in group:
        need = int(estimate(cfgs[i])) if estimate is not None and budget is not None else 0
        if current and (len(current) >= max_size or (budget is not None and used + need > budget)):
            chunks.append(current)
            current, used = [], 0
        current.append(i)
        used += need
    if current:
        chunks.append(current)
    return chunks


def describe(packs: Sequence[Sequence[int]]) -> str:
    """One line for the log: ``8 packs (sizes 2, 2, ...)`` or ``2 packs (2 x 4)`` when all are equal."""
    sizes = [len(p) for p in packs]
    if sizes and len(set(sizes)) == 1:
        return f"{len(packs)} pack{'s' if len(packs) != 1 else ''} ({len(packs)} x {sizes[0]})"
    return f"{len(packs)} packs (sizes {', '.join(map(str, sizes))})"
