"""Composing a sweep's jobs: Hydra composes once per set of config-group choices, the rest is derived.

Hydra composes every job of a sweep from scratch (``load_sweep_config``: parse the
overrides, build the defaults list, load and merge every config file, apply the
overrides, fill the ``hydra`` node). For an rnn-sweep job that is ~0.09 s on a
quiet 2-core machine, 27 s for the 300 jobs of ``experiment=r2rt_grid`` -- more
than a sixth of the whole sweep once training is packed.

Most sweep jobs differ from each other only in plain values (``num_steps=7
seed=2``), which Hydra applies *after* the defaults list, one override at a time,
to the merged config. :class:`SweepComposer` therefore lets Hydra compose one
*base* config per distinct set of the other overrides (config-group choices such
as ``model=static``), and derives each job from a copy of its base by the same
steps Hydra's ``ConfigLoaderImpl._load_configuration_impl`` takes after merging:
``_apply_overrides_to_config`` with the job's value overrides, the job's
``hydra.overrides.task`` and ``hydra.job.override_dirname``, and
``OmegaConf.copy_cache`` from the sweep's config (as ``load_sweep_config``).
A job with anything else -- ``+key``/``++key``/``~key`` overrides, ``hydra.*``
overrides, dict values, a ``hydra.searchpath`` on the command line -- is composed
by Hydra in full. tests/test_compose.py checks derived configs against Hydra's own
composition, field by field including the ``hydra`` node.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

from rnn_sweep.launch import hydra_private


class SweepComposer:
    """Compose the jobs of one sweep.

    Args:
        loader: the sweep's Hydra config loader.
        master: the sweep's own composed config.
        compose_fully: Hydra's composition, ``f(master, overrides)``; default
            ``loader.load_sweep_config``.
    """

    def __init__(self, loader: Any, master: DictConfig,
                 compose_fully: Optional[Callable[[DictConfig, list[str]], DictConfig]] = None) -> None:
        self.loader, self.master = loader, master
        self.compose_fully = compose_fully or loader.load_sweep_config
        self.parser = OverridesParser.create()
        self.hydra_overrides = list(OmegaConf.to_container(master.hydra.overrides.hydra))
        self.repo = None
        if not any(o.startswith("hydra.searchpath") for o in self.hydra_overrides):
            self.repo = hydra_private.caching_repo(loader, master.hydra.job.config_name, self.hydra_overrides)
        self.bases: dict[tuple[str, ...], DictConfig] = {}
        self.derived = 0  # jobs composed from a base (for the debug log and tests)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        """The job's config, exactly as ``loader.load_sweep_config(master, overrides)`` composes it."""
        parsed = self.parser.parse_overrides(list(overrides))
        split = self._split(parsed)
        if split is None:
            return self.compose_fully(self.master, list(overrides))
        groups, values = split
        key = tuple(o.input_line for o in groups)
        if key not in self.bases:
            self.bases[key] = self.compose_fully(self.master, list(key))
        cfg = copy.deepcopy(self.bases[key])
        hydra_private.apply_value_overrides(values, cfg)
        self._finish(cfg, parsed)
        self.derived += 1
        return cfg

    def _split(self, parsed: list[Override]) -> tuple[list[Override], list[Override]] | None:
        """(group choices, plain value overrides), or None when Hydra must compose the job in full."""
        if self.repo is None:
            return None
        groups, values = [], []
        for o in parsed:
            if o.is_hydra_override() or o.is_sweep_override() or o.package is not None \
                    or o.type != OverrideType.CHANGE or isinstance(o.value(), dict):
                return None
            (groups if self.repo.group_exists(o.key_or_group) else values).append(o)
        return groups, values

    def _finish(self, cfg: DictConfig, parsed: list[Override]) -> None:
        """The job's own records in the hydra node, as Hydra writes them after applying overrides."""
        task = [o for o in parsed if not o.is_hydra_override()]
        cfg.hydra.overrides.task = [o.input_line for o in task]
        job = cfg.hydra.job
        cfg.hydra.job.override_dirname = hydra_private.overrides_dirname(
            task, kv_sep=job.config.override_dirname.kv_sep,
            item_sep=job.config.override_dirname.item_sep,
            exclude_keys=job.config.override_dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)


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
