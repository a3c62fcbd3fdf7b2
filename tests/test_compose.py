"""A job derived by SweepComposer is exactly the config Hydra's own composition gives, hydra node included."""

from __future__ import annotations

import pytest
from conftest import CONF

JOBS = [
    ["experiment=r2rt_grid", "num_steps=3", "seed=1", "state_size=4"],
    ["experiment=r2rt_grid", "num_steps=17", "seed=2", "state_size=32"],
    ["seed=1", "model=static", "model.cell=gru", "num_steps=2"],  # a group choice among the values
    ["model=dynamic", "model.cell=lstm", "train.optimizer.name=adam", "train.optimizer.lr=1e-3"],
    ["truncation=true_bptt", "truncation.update_every=2", "num_steps=4"],
    ["truncation.update_every=null", "model.cell='gru'", "model=static"],
    ["data.dependencies=[{lag:2,effect:0.4}]", "num_steps=3"],  # a list of dicts replaces the list
    ["train.epochs=2", "data.length=30000", "train.xla=false"],
    ["+force=true", "num_steps=2"],  # an addition: composed by Hydra in full
    ["++train.epochs=2", "seed=3"],  # a forced addition: composed by Hydra in full
    [],  # no overrides at all
]


def _setup(master_overrides):
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    import rnn_sweep.launch.cli  # noqa: F401  (schema and resolvers)
    from rnn_sweep.launch.compose import SweepComposer

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF)))
    master = loader.load_configuration("config", overrides=master_overrides, run_mode=RunMode.MULTIRUN)
    return loader, master, SweepComposer(loader, master)


def _text(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg)  # unresolved: interpolations compared as written


@pytest.mark.parametrize("master_overrides", [[], ["hydra.sweep.dir=/tmp/x", "hydra.job.config.override_dirname.kv_sep=_"]])
def test_derived_jobs_equal_hydras_composition(master_overrides):
    loader, master, composer = _setup(master_overrides)
    for job in JOBS * 2:  # the second time every base is cached
        ours = composer.compose(job)
        theirs = loader.load_sweep_config(master, list(job))
        assert _text(ours) == _text(theirs), job
        assert list(ours.hydra.overrides.task) == [o for o in job if not o.startswith("hydra.")]
    assert composer.derived >= 2 * (len(JOBS) - 3)  # the value overrides really took the fast path
    assert len(composer.bases) <= 6  # one base per set of group choices


def test_a_derived_job_is_its_own_copy():
    """Changing one job's config never leaks into the next job derived from the same base."""
    from omegaconf import OmegaConf, open_dict

    _, _, composer = _setup([])
    first = composer.compose(["num_steps=3"])
    with open_dict(first):
        first.seed = 99
        first.hydra.job.num = 7
    second = composer.compose(["num_steps=4"])
    assert second.seed == 0 and second.num_steps == 4 and OmegaConf.is_missing(second.hydra.job, "num")


@pytest.mark.parametrize("bad", [["num_steps=abc"], ["no_such_key=1"], ["model=nonexistent"]])
def test_bad_overrides_fail_as_hydra_fails(bad):
    loader, master, composer = _setup([])
    with pytest.raises(Exception) as ours:
        composer.compose(bad)
    with pytest.raises(Exception) as theirs:
        loader.load_sweep_config(master, bad)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)
