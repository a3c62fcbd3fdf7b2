"""train.replicas=K: K seeds as one vectorised computation, checked against K single runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import small_cfg
from rnn_sweep.config import ConfigError, RunConfig, validate


def test_stacked_gradients_are_each_replicas_own():
    """Slice k of the stacked gradient == the single-run gradient of replica k (independent path)."""
    import tensorflow as tf

    from rnn_sweep import engine
    from rnn_sweep.models import ScratchBackend
    from rnn_sweep.replicas import StackedScratch, stacked_step

    single = ScratchBackend(3)
    stacked = StackedScratch(single, 3)
    seeds = [4, 9, 11]
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 2, (3, 6, 5))  # [K, B, n]
    ys = rng.integers(0, 2, (3, 6, 5))
    s0 = rng.uniform(-1, 1, (3, 6, 3)).astype(np.float32)
    params = {k: tf.constant(v) for k, v in stacked.init_params(seeds).items()}
    losses, grads, (s_new,) = stacked_step(stacked, params, tf.one_hot(xs, 2), tf.constant(ys, tf.int32),
                                           (tf.constant(s0),))
    for k, seed in enumerate(seeds):
        p = {n: tf.constant(v) for n, v in single.init_params(seed).items()}
        np.testing.assert_array_equal(p["W"].numpy(), params["W"][k].numpy())
        loss, g, (s_k,) = engine.tf_style_step(single, p, tf.one_hot(xs[k], 2), tf.constant(ys[k], tf.int32),
                                               (tf.constant(s0[k]),))
        assert losses[k].numpy() == pytest.approx(loss.numpy(), abs=1e-6)
        np.testing.assert_allclose(s_new[k].numpy(), s_k.numpy(), atol=1e-6)
        for name in p:
            np.testing.assert_allclose(grads[name][k].numpy(), g[name].numpy(), atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_each_replica_matches_its_single_run(tmp_path):
    """Replica k's losses (every block of 2 epochs) and held-out results == the run with seed k."""
    from rnn_sweep.train import train

    overrides = ["num_steps=4", "state_size=5", "train.epochs=2", "data.length=60000", "data.eval_length=20000"]
    combined = train(small_cfg(*overrides, "seed=5", "train.replicas=3"), tmp_path / "rep")
    assert combined["seeds"] == [5, 6, 7] and combined["status"] == "completed"
    assert not (tmp_path / "rep" / "summary.json").exists()  # only per-seed records: no double counting
    for seed in (5, 6, 7):
        single = train(small_cfg(*overrides, f"seed={seed}"), tmp_path / f"single{seed}")
        rdir = tmp_path / "rep" / f"seed={seed}"
        a = pd.read_csv(rdir / "losses.csv")
        b = pd.read_csv(tmp_path / f"single{seed}" / "losses.csv")
        assert a["step"].tolist() == b["step"].tolist() == [75, 150]  # 300 columns / 4 = 75 windows
        np.testing.assert_allclose(a["loss"], b["loss"], atol=1e-5, rtol=0)
        rec = json.loads((rdir / "summary.json").read_text())
        assert rec["seed"] == seed and rec["config"]["seed"] == seed and rec["config"]["train"]["replicas"] == 1
        assert rec["status"] == "completed" and rec["steps"] == single["steps"] == 150
        assert rec["heldout_loss"] == pytest.approx(single["heldout_loss"], abs=1e-5)
        for lag, frac in single["learned_fraction"].items():
            assert rec["learned_fraction"][lag] == pytest.approx(frac, abs=1e-3)
        assert set(rec) >= set(single)  # a complete run record, same keys as a single run
    # the replicas really are different runs
    first = pd.read_csv(tmp_path / "rep" / "seed=5" / "losses.csv")["loss"]
    assert not np.allclose(first, pd.read_csv(tmp_path / "rep" / "seed=6" / "losses.csv")["loss"])


def test_diverged_replicas_are_recorded(tmp_path):
    from rnn_sweep.train import train

    s = train(small_cfg("train.optimizer.name=sgd", "train.optimizer.lr=1e6", "train.diverge_loss=5",
                        "train.replicas=2"), tmp_path)
    assert s["status"] == "diverged"
    for seed in (0, 1):
        rec = json.loads((tmp_path / f"seed={seed}" / "summary.json").read_text())
        assert rec["status"] == "diverged" and rec["diverged_at_step"] == 100 and rec["heldout_loss"] is None


def test_existing_replica_record_is_not_overwritten(tmp_path):
    from rnn_sweep.replicas import train_replicas

    (tmp_path / "seed=1").mkdir()
    (tmp_path / "seed=1" / "summary.json").write_text("{}")
    with pytest.raises(FileExistsError, match="seed=1"):
        train_replicas(small_cfg("train.replicas=2"), tmp_path)


@pytest.mark.parametrize("field,value", [("backend", "static"), ("style", "true")])
def test_replicas_need_scratch_backend_and_tf_style(field, value):
    cfg = RunConfig()
    cfg.train.replicas = 4
    if field == "backend":
        cfg.model.backend = value
    else:
        cfg.truncation.style = value
    with pytest.raises(ConfigError, match=r"^train\.replicas=4 is invalid: .*scratch.*tf"):
        validate(cfg)
    cfg.train.replicas = 1
    validate(cfg)  # the same configuration as a single run is fine


def test_replicas_must_be_positive():
    cfg = RunConfig()
    cfg.train.replicas = 0
    with pytest.raises(ConfigError, match=r"^train\.replicas=0 is invalid"):
        validate(cfg)
