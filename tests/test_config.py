"""Validation: every bad value named with what is allowed, before TensorFlow loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnn_sweep.task.config import ConfigError, Dependency, RunConfig, from_dict, validate, windows_per_epoch


def _cfg(**kw) -> RunConfig:
    cfg = RunConfig()
    for key, value in kw.items():
        obj = cfg
        *path, last = key.split("__")
        for p in path:
            obj = getattr(obj, p)
        setattr(obj, last, value)
    return cfg


@pytest.mark.parametrize("key,value,field,hint", [
    ("num_steps", 0, "num_steps", "positive integer"),
    ("num_steps", -3, "num_steps", "positive integer"),
    ("state_size", 0, "state_size", "positive integer"),
    ("train__batch_size", 0, "train.batch_size", "positive integer"),
    ("train__epochs", 0, "train.epochs", "positive integer"),
    ("train__log_every", -1, "train.log_every", "positive integer"),
    ("model__backend", "pytorch", "model.backend", "allowed values are scratch"),
    ("model__cell", "transformer", "model.cell", "allowed values"),
    ("train__optimizer__name", "rmsprop", "train.optimizer.name", "adagrad, sgd, adam"),
    ("train__optimizer__lr", 0.0, "train.optimizer.lr", "positive"),
    ("truncation__style", "bogus", "truncation.style", "allowed values"),
    ("data__input_prob", 1.5, "data.input_prob", "[0, 1]"),
    ("data__boundary", "clip", "data.boundary", "pad, wrap"),
    ("seed", -1, "seed", "non-negative"),
])
def test_bad_values_name_field_and_allowed(key, value, field, hint):
    with pytest.raises(ConfigError) as err:
        validate(_cfg(**{key: value}))
    msg = str(err.value)
    assert msg.startswith(field + "=") or msg.startswith(field + ":"), msg
    assert hint in msg
    assert "\n" not in msg


def test_lag_below_one_rejected():
    cfg = RunConfig()
    cfg.data.dependencies = [Dependency(lag=0, effect=0.2)]
    with pytest.raises(ConfigError, match=r"data\.dependencies\[0\]\.lag=0"):
        validate(cfg)


def test_probability_leaving_unit_interval_for_some_combination():
    # 0.5 + 0.5 + 0.25 = 1.25 when both fire, although each effect alone is fine.
    cfg = RunConfig()
    cfg.data.dependencies = [Dependency(3, 0.5), Dependency(8, 0.25)]
    with pytest.raises(ConfigError, match=r"P\(Y=1\)=1\.25 for X_\(t-3\)=1, X_\(t-8\)=1"):
        validate(cfg)


def test_duplicate_lags_rejected():
    cfg = RunConfig()
    cfg.data.dependencies = [Dependency(3, 0.1), Dependency(3, 0.1)]
    with pytest.raises(ConfigError, match="distinct"):
        validate(cfg)


def test_batch_that_does_not_fit_the_data():
    cfg = _cfg(data__length=1000, train__batch_size=200, num_steps=10)  # 5 columns < 10 steps
    with pytest.raises(ConfigError, match=r"train\.batch_size=200 does not fit the data"):
        validate(cfg)


def test_defaults_are_the_article_and_valid():
    cfg = RunConfig()
    validate(cfg)
    assert (cfg.num_steps, cfg.state_size, cfg.train.batch_size) == (5, 4, 200)
    assert (cfg.train.optimizer.name, cfg.train.optimizer.lr, cfg.train.optimizer.initial_accumulator) == ("adagrad", 0.1, 0.1)
    assert windows_per_epoch(cfg) == 1000  # 1,000,000 / 200 rows / 5 steps


def test_from_dict_rejects_unknown_key():
    with pytest.raises(ConfigError, match=r"train\.optimiser"):
        from_dict({"train": {"optimiser": {}}})


def test_validation_happens_before_tensorflow_import():
    code = (
        "import sys\n"
        "from rnn_sweep.task.config import RunConfig, ConfigError\n"
        "from rnn_sweep.run.train import train\n"
        "cfg = RunConfig(num_steps=0)\n"
        "try:\n"
        "    train(cfg, '/nonexistent/never-created')\n"
        "except ConfigError as e:\n"
        "    print('tf' if 'tensorflow' in sys.modules else 'no-tf', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("no-tf num_steps=0"), out.stdout + out.stderr


# --- Booleans: exactly what YAML 1.1 reads as true/false, nothing else ------------------
# The accepted words come from the YAML 1.1 boolean type (yaml.org/type/bool), written out
# here by hand, not read back from rnn_sweep.task.config.
YAML_TRUE = ["true", "True", "TRUE", "yes", "Yes", "on", "ON"]
YAML_FALSE = ["false", "False", "no", "NO", "off", "Off"]
NOT_BOOLEANS = ["maybe", "", "y", "n", "1", "0", "t", "nope", 2, 1, 0, 1.0, None, [], {}]


@pytest.mark.parametrize("word", YAML_TRUE + YAML_FALSE)
def test_parse_bool_accepts_yaml_booleans(word):
    from rnn_sweep.task.config import parse_bool

    assert parse_bool("force", word) is (word in YAML_TRUE)
    assert parse_bool("force", word in YAML_TRUE) is (word in YAML_TRUE)


@pytest.mark.parametrize("value", NOT_BOOLEANS)
def test_parse_bool_refuses_everything_else_naming_the_field(value):
    from rnn_sweep.task.config import parse_bool

    with pytest.raises(ConfigError) as err:
        parse_bool("train.xla", value)
    assert str(err.value).startswith(f"train.xla={value!r} is invalid: must be true or false")


@pytest.mark.parametrize("field", ["xla", "progress"])
@pytest.mark.parametrize("value,expected", [("no", False), ("off", False), ("yes", True), (True, True),
                                            ("2", None), (2, None), ("y", None), ("maybe", None)])
def test_schema_booleans_are_strict_through_hydra(field, value, expected):
    """OmegaConf alone turns 2 and 'y' into True for a bool field; the schema must not."""
    from conftest import compose

    from rnn_sweep.launch.cli import to_run_config

    override = f"train.{field}={value}"
    if expected is None:
        with pytest.raises(ConfigError, match=rf"^train\.{field}=.* is invalid: must be true or false"):
            to_run_config(compose(["data=small", override]))
    else:
        assert getattr(to_run_config(compose(["data=small", override])).train, field) is expected


@pytest.mark.parametrize("value,expected", [("true", True), ("no", False), ("off", False), ("false", False),
                                            ("maybe", None), ("2", None), ("y", None)])
def test_force_is_strict(value, expected):
    """``bool("no")`` is True: +force=no once deleted a finished run of another config."""
    from conftest import compose

    from rnn_sweep.launch.cli import force_requested, to_run_config

    cfg = compose(["data=small", f"+force={value}"])
    if expected is None:
        with pytest.raises(ConfigError, match=r"^force=.* is invalid: must be true or false"):
            to_run_config(cfg)
    else:
        to_run_config(cfg)
        assert force_requested(cfg) is expected


def test_bad_boolean_at_the_cli_is_one_line_before_tensorflow(tmp_path):
    from conftest import run_cli

    out = run_cli("train.xla=2", "data=small", cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "rnn-sweep: error: train.xla=2 is invalid: must be true or false (also accepted: yes/on and no/off)"]
    assert not (tmp_path / "outputs").exists()


# --- Deleting a config group means the schema's defaults, which are the default options ---
@pytest.mark.parametrize("group,option", [("data", "r2rt"), ("train", "article"), ("model", "scratch"),
                                          ("truncation", "tf")])
def test_deleting_a_group_gives_the_default_option(group, option):
    """``~data`` composes no data option: the schema's defaults apply. Documented as the same run
    as the default option; checked against the option's YAML file read directly."""
    import dataclasses

    import yaml
    from conftest import CONF, compose

    from rnn_sweep.launch.cli import to_run_config

    deleted = dataclasses.asdict(to_run_config(compose([f"~{group}"])))[group]
    from_file = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
    for key, value in from_file.items():
        assert deleted[key] == value, (group, key)


def test_no_dependencies_is_a_task_with_nothing_to_learn():
    """data.dependencies=[]: Y is Bernoulli(base_prob); the only level is H(0.5) = ln 2."""
    import math

    from conftest import compose

    from rnn_sweep.task.baselines import learning_levels
    from rnn_sweep.launch.cli import to_run_config

    cfg = to_run_config(compose(["data.dependencies=[]"]))
    levels = learning_levels(cfg.data)
    assert [(lv.name, round(lv.loss, 6)) for lv in levels] == [("none", round(math.log(2), 6))]
