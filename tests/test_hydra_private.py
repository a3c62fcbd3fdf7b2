"""The private Hydra APIs rnn-sweep uses (rnn_sweep/launch/hydra_private.py) still behave as it needs.

Each test states what rnn-sweep relies on and checks it against Hydra's public
behaviour (its compose API, its launchers), so that a Hydra upgrade that renames or
changes one of them fails here, naming it. A second test checks that no other
module of the package reaches into Hydra's private names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext
from hydra.utils import get_class
from omegaconf import OmegaConf

from rnn_sweep.launch import hydra_private
from rnn_sweep.launch.cli import CONF_DIR

PACKAGE = Path(__file__).resolve().parents[1] / "rnn_sweep"


@pytest.fixture
def loader():
    """The config loader of a Hydra initialised on rnn-sweep's conf/ (public API)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield GlobalHydra.instance().config_loader()
    GlobalHydra.instance().clear()


def parse(*overrides: str):
    return OverridesParser.create().parse_overrides(list(overrides))


def test_basic_launcher_path_and_conf():
    cls = get_class(hydra_private.BASIC_LAUNCHER)
    assert issubclass(cls, Launcher)
    conf = OmegaConf.structured(hydra_private.basic_launcher_conf())
    assert conf._target_ == hydra_private.BASIC_LAUNCHER


def test_caching_repo_tells_groups_from_values(loader):
    repo = hydra_private.caching_repo(loader, "config", [])
    assert repo.group_exists("model") and repo.group_exists("experiment")
    assert not repo.group_exists("num_steps") and not repo.group_exists("seed")


def test_value_overrides_are_applied_as_hydra_composes_them(loader):
    cfg = compose(config_name="config")
    hydra_private.apply_value_overrides(parse("num_steps=7", "train.optimizer.lr=0.5"), cfg)
    expected = compose(config_name="config", overrides=["num_steps=7", "train.optimizer.lr=0.5"])
    assert cfg.num_steps == expected.num_steps == 7
    assert cfg.train.optimizer.lr == expected.train.optimizer.lr == 0.5
    with pytest.raises(Exception, match="no_such_key"):  # Hydra refuses a key the config lacks
        hydra_private.apply_value_overrides(parse("no_such_key=1"), cfg)


def test_overrides_dirname_is_sorted_joined_and_excludes_keys():
    # Hydra's documented format (hydra.job.override_dirname): sorted, item_sep-joined, kv_sep for '='
    got = hydra_private.overrides_dirname(parse("seed=2", "num_steps=7", "train.progress=false"),
                                          exclude_keys=["train.progress"], item_sep=",", kv_sep=":")
    assert got == "num_steps:7,seed:2"


def test_sweep_composition_is_routed_through_the_loaders_method(loader):
    calls = []

    class Hook:
        def __init__(self, original, owner):
            self.original, self.owner = original, owner

        def __call__(self, master_config, sweep_overrides):  # Hydra passes both by keyword
            calls.append(list(sweep_overrides))
            return self.original(master_config, sweep_overrides)

    hydra_private.route_sweep_composition(loader, Hook)
    first = loader.load_sweep_config
    hydra_private.route_sweep_composition(loader, Hook)  # once per loader
    assert loader.load_sweep_config is first and first.owner is loader
    # Hydra's sweepers validate a batch through this method (the hook must see it)
    from hydra.plugins.sweeper import Sweeper

    class Probe(Sweeper):  # only what validate_batch_is_legal reads
        def setup(self, *, hydra_context, task_function, config):
            self.hydra_context, self.config = hydra_context, config

        def sweep(self, arguments):
            return None

    sweeper = Probe()
    sweeper.setup(hydra_context=HydraContext(config_loader=loader, callbacks=None), task_function=None,
                  config=compose(config_name="config", return_hydra_config=True))
    sweeper.validate_batch_is_legal([["num_steps=3"]])
    assert calls == [["num_steps=3"]]


def test_no_other_module_uses_a_private_hydra_name():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "hydra_private.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] if node.module.startswith("hydra") else []
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("hydra")]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("hydra"):
                names = [node.value]
            elif isinstance(node, ast.Attribute) and node.attr in ("_EXECUTOR", "_apply_overrides_to_config",
                                                                     "_parse_overrides_and_create_caching_repo"):
                names = [node.attr]
            for name in names:
                private = [part for part in name.split(".") if part.startswith("_") and part != "_target_"]
                if private:
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name}")
    assert not offenders, "private Hydra names outside rnn_sweep/launch/hydra_private.py:\n" + "\n".join(offenders)
