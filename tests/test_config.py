"""Validation: every bad value named with what is allowed, before TensorFlow loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnn_sweep.config import ConfigError, Dependency, RunConfig, from_dict, validate, windows_per_epoch


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
        "from rnn_sweep.config import RunConfig, ConfigError\n"
        "from rnn_sweep.train import train\n"
        "cfg = RunConfig(num_steps=0)\n"
        "try:\n"
        "    train(cfg, '/nonexistent/never-created')\n"
        "except ConfigError as e:\n"
        "    print('tf' if 'tensorflow' in sys.modules else 'no-tf', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("no-tf num_steps=0"), out.stdout + out.stderr
