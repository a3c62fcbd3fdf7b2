"""Every use of a private Hydra API in rnn-sweep, each with the reason it is needed.

Nothing else in the package reaches into ``hydra._internal`` or a plugin's private
names: when Hydra changes one of these, tests/test_hydra_private.py fails and names
it, instead of a sweep breaking somewhere downstream. Hydra 1.3 has no public
equivalent for any of them:

* **The basic launcher** lives only in ``hydra._internal.core_plugins``: rnn-sweep's
  in-process launcher wraps it (``hydra/launcher=rnn_sweep``) and extends its
  structured config.
* **Fast sweep composition** (:mod:`rnn_sweep.launch.compose`): Hydra composes every
  job from scratch (~0.09 s a job, 27 s for the 300-run grid). rnn-sweep composes
  one base config per set of config-group choices with Hydra itself and derives
  each job by the steps Hydra takes after merging: its config repository (to tell
  a group choice from a value), its rule for applying value overrides, and its
  ``override_dirname``. The sweeper validates every job through
  ``config_loader.load_sweep_config`` and a launcher composes each again; routing
  that public method of this sweep's loader through the composer (an instance
  attribute, nothing global) makes each job composed once, cheaply.
"""

from __future__ import annotations

from typing import Any, Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_launcher import BasicLauncherConf
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def basic_launcher_conf() -> type:
    """The basic launcher's structured config class (rnn-sweep's ``hydra/launcher=rnn_sweep`` extends it)."""
    return BasicLauncherConf


def caching_repo(loader: Any, config_name: str | None, hydra_overrides: list[str]) -> Any:
    """The sweep's config repository, as Hydra builds it to compose (``repo.group_exists(name)``)."""
    _, repo = loader._parse_overrides_and_create_caching_repo(config_name, hydra_overrides)  # noqa: SLF001
    return repo


def apply_value_overrides(overrides: list[Override], cfg: DictConfig) -> None:
    """Apply plain ``key=value`` overrides to a merged config by Hydra's own rules (in place)."""
    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)  # noqa: SLF001


def overrides_dirname(overrides: Sequence[Override], exclude_keys: list[str], item_sep: str, kv_sep: str) -> str:
    """``hydra.job.override_dirname`` of a job's task overrides, as Hydra writes it."""
    return get_overrides_dirname(overrides=list(overrides), exclude_keys=exclude_keys, item_sep=item_sep,
                                 kv_sep=kv_sep)


def route_sweep_composition(loader: Any, hook: type) -> None:
    """Route ``loader.load_sweep_config`` through ``hook(original, loader)``, once per loader.

    Hydra's sweeper (``validate_batch_is_legal``) and launchers compose each job by
    calling this method of the sweep's config loader; the hook replaces it on this
    one loader instance (an instance attribute: other loaders are untouched).
    """
    if not isinstance(getattr(loader, "load_sweep_config", None), hook):
        loader.load_sweep_config = hook(loader.load_sweep_config, loader)
