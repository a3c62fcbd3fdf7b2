"""Every experiment file composes, every job of its sweep validates, and its header's run
count is the sweep's size.

The jobs are expanded here independently of rnn-sweep's launcher and composer: the
sweeper's ``params`` are split with Hydra's override parser, the cartesian product is
taken with :mod:`itertools`, config-group choices are composed by Hydra itself (once per
choice) and plain values are set on a copy with OmegaConf.
"""

from __future__ import annotations

import copy
import itertools
import re

import pytest
from conftest import CONF, compose, run_cli

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def sweep_params(experiment: str) -> dict[str, list[str]]:
    """The experiment's ``hydra.sweeper.params``: key -> its values as override strings."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from rnn_sweep.launch.cli import CONF_DIR  # noqa: F401  (registers the schema and resolvers)

    params = compose([f"experiment={experiment}"], return_hydra=True).hydra.sweeper.params or {}
    parser = OverridesParser.create()
    out = {}
    for key, values in params.items():
        override = parser.parse_override(f"{key}={values}")
        out[key] = [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() \
            else [str(values)]
    return out


def expand(experiment: str):
    """Every job of the experiment's sweep as (overrides, validated RunConfig)."""
    from omegaconf import OmegaConf

    from rnn_sweep.launch.cli import to_run_config

    params = sweep_params(experiment)
    groups = [k for k in params if (CONF / k).is_dir()]
    values = [k for k in params if k not in groups]
    for choice in itertools.product(*(params[k] for k in groups)):
        base = compose([f"experiment={experiment}", *(f"{k}={v}" for k, v in zip(groups, choice))])
        for combo in itertools.product(*(params[k] for k in values)):
            cfg = copy.deepcopy(base)
            for key, value in zip(values, combo):
                OmegaConf.update(cfg, key, OmegaConf.create({"v": value_of(value)}).v, merge=False)
            overrides = [*(f"{k}={v}" for k, v in zip(groups, choice)), *(f"{k}={v}" for k, v in zip(values, combo))]
            yield overrides, to_run_config(cfg)


def value_of(text: str):
    """An override value as YAML reads it (``5`` -> 5, ``0.1`` -> 0.1, ``adam`` -> 'adam')."""
    import yaml

    return yaml.safe_load(text)


def header_run_count(experiment: str) -> int:
    """The run count the experiment's header states ("= 300 runs", "28 runs", "(4 runs")."""
    header = " ".join(line.lstrip("# ") for line in (CONF / "experiment" / f"{experiment}.yaml").read_text()
                      .splitlines() if line.startswith("#"))
    found = re.findall(r"(\d[\d,]*)\s+runs\b", header)
    assert found, f"{experiment}.yaml: its header states no run count"
    return int(found[0].replace(",", ""))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_every_job_validates(experiment):
    jobs = list(expand(experiment))
    assert len(jobs) == header_run_count(experiment)
    names = {tuple(sorted(o)) for o, _ in jobs}
    assert len(names) == len(jobs), "two jobs of the sweep have the same overrides"


def test_experiment_expansion_can_fail(monkeypatch):
    """A job the schema refuses is reported (the expansion really validates)."""
    import rnn_sweep.launch.cli as cli
    from rnn_sweep.task.config import ConfigError

    real = cli.to_run_config

    def strict(cfg):
        run_cfg = real(cfg)
        if run_cfg.num_steps == 2:
            raise ConfigError("num_steps=2 is invalid: refused by this test")
        return run_cfg

    monkeypatch.setattr(cli, "to_run_config", strict)
    with pytest.raises(ConfigError, match="num_steps=2"):
        list(expand("smoke"))


@pytest.mark.slow
def test_smoke_experiment_runs_end_to_end(tmp_path):
    out = run_cli("experiment=smoke", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = sorted(p.parent.name for p in (tmp_path / "outputs/sweeps/smoke").glob("*/summary.json"))
    assert runs == ["num_steps=2,seed=0", "num_steps=2,seed=1", "num_steps=5,seed=0", "num_steps=5,seed=1"]
    assert (tmp_path / "outputs/sweeps/smoke/aggregate/runs.csv").is_file()
