"""The scratch backend and the compiled training loop, checked independently."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from conftest import small_cfg
import oracle
from rnn_sweep.model.inits import vanilla_init
from rnn_sweep.model.scratch import ScratchBackend


def numpy_forward(params, x_int, s0):
    """The article's cell written out in NumPy, one step at a time."""
    W, b, U, c = (params[k].astype(np.float64) for k in ("W", "b", "U", "c"))
    s = s0.astype(np.float64)
    logits = []
    for t in range(x_int.shape[1]):
        onehot = np.eye(2)[x_int[:, t]]
        s = np.tanh(np.concatenate([onehot, s], axis=1) @ W + b)
        logits.append(s @ U + c)
    return np.stack(logits, axis=1), s


def test_init_is_seeded_glorot_with_zero_biases():
    p = vanilla_init(0, 4)
    assert p["W"].shape == (6, 4) and p["U"].shape == (4, 2)
    assert np.all(np.abs(p["W"]) <= np.sqrt(6 / 10)) and np.all(p["b"] == 0) and np.all(p["c"] == 0)
    np.testing.assert_array_equal(p["W"], vanilla_init(0, 4)["W"])
    assert not np.array_equal(p["W"], vanilla_init(1, 4)["W"])


def test_scratch_unroll_matches_numpy():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    be = ScratchBackend(5)
    params = be.init_params([3, 8])  # two replicas, each checked on its own inputs and state
    params["b"] = rng.normal(size=(2, 5)).astype(np.float32)
    params["c"] = rng.normal(size=(2, 2)).astype(np.float32)
    x = rng.integers(0, 2, (2, 7, 6))
    s0 = rng.uniform(-1, 1, (2, 7, 5)).astype(np.float32)
    logits, (s,) = be.unroll({k: tf.constant(v) for k, v in params.items()},
                             tf.one_hot(x, 2), (tf.constant(s0),))
    for k in range(2):
        ref_logits, ref_s = numpy_forward({n: v[k] for n, v in params.items()}, x[k], s0[k])
        np.testing.assert_allclose(logits.numpy()[k], ref_logits, atol=1e-5)
        np.testing.assert_allclose(s.numpy()[k], ref_s, atol=1e-5)


def _one_epoch(cfg, windows=1):
    import tensorflow as tf

    from rnn_sweep.task import data
    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim

    be = ScratchBackend(cfg.state_size)
    params = {k: tf.constant(v) for k, v in be.init_params([cfg.seed]).items()}
    hp = optim.stacked_hyperparams([cfg.train.optimizer])
    st = optim.init_state(cfg.train.optimizer.name, params, hp)
    xs, ys = (a[:, None] for a in data.epoch_windows(cfg.data, cfg.train.batch_size * cfg.num_steps * windows,
                                                     cfg.train.batch_size, cfg.num_steps, data.rng_for(0, 0, 0)))
    fn = engine.epoch_fn(be, cfg.train.optimizer.name, "tf", cfg.train.xla, cfg.num_steps)
    new, _, losses, _ = fn(params, st, hp, data.windows_to_steps(xs), data.windows_to_steps(ys),
                           be.zero_state(1, cfg.train.batch_size))
    # gradient of the first window, by hand from the oracle, for the optimizer checks
    one = {k: v.numpy()[0] for k, v in params.items()}
    ref = oracle.window_grads(one, oracle.onehot(xs[0, 0]), ys[0, 0], np.zeros((cfg.train.batch_size, cfg.state_size)))
    return one, {k: v.numpy()[0] for k, v in new.items()}, ref.grads, losses.numpy()[:, 0], ref.loss


@pytest.mark.parametrize("xla", [True, False])
def test_one_step_changes_every_parameter_with_tf1_adagrad(xla):
    cfg = small_cfg(f"train.xla={str(xla).lower()}")
    params, new, grads, losses, loss = _one_epoch(cfg)
    assert losses[0] == pytest.approx(loss, abs=1e-6)
    for k in params:
        p, g = params[k].astype(np.float64), grads[k]
        expected = p - 0.1 * g / np.sqrt(0.1 + g * g)  # TF1 Adagrad, accumulator starts at 0.1
        np.testing.assert_allclose(new[k], expected, atol=1e-6)
        assert np.all(new[k] != p), k


@pytest.mark.parametrize("name,make", [
    ("adagrad", lambda tf: tf.compat.v1.train.AdagradOptimizer(0.1, initial_accumulator_value=0.1)),
    ("adam", lambda tf: tf.compat.v1.train.AdamOptimizer(0.01, epsilon=1e-8)),
    ("sgd", lambda tf: tf.compat.v1.train.GradientDescentOptimizer(0.1)),
])
def test_optimizers_match_tf1_over_three_windows(name, make):
    import tensorflow as tf

    lr = 0.01 if name == "adam" else 0.1
    cfg = small_cfg(f"train.optimizer.name={name}", f"train.optimizer.lr={lr}", "train.xla=false")
    from rnn_sweep.task import data
    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim

    be = ScratchBackend(cfg.state_size)
    init = be.init_params([0])
    xs, ys = (a[:, None] for a in data.epoch_windows(cfg.data, 200 * 5 * 3, 200, 5, data.rng_for(0, 0, 0)))
    params = {k: tf.constant(v) for k, v in init.items()}
    hp = optim.stacked_hyperparams([cfg.train.optimizer])
    ours, _, _, _ = engine.epoch_fn(be, name, "tf", False, 5)(params, optim.init_state(name, params, hp), hp,
                                                              data.windows_to_steps(xs), data.windows_to_steps(ys),
                                                              be.zero_state(1, 200))
    # The reference: TF's own TF1 optimizer on tf.Variables, window by window, eager.
    variables = {k: tf.Variable(v) for k, v in init.items()}
    opt, state = make(tf), be.zero_state(1, 200)
    for i in range(3):
        with tf.GradientTape() as tape:
            logits, state = be.unroll(variables, tf.one_hot(tf.cast(xs[i], tf.int32), 2), state)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(ys[i], tf.int32), logits=logits))
        grads = tape.gradient(loss, list(variables.values()))
        opt.apply_gradients(zip(grads, variables.values()))
    for k in init:
        np.testing.assert_allclose(ours[k].numpy(), variables[k].numpy(), atol=2e-6, rtol=1e-5)


def test_run_files_and_determinism(tmp_path):
    from rnn_sweep.run.train import train

    cfg = small_cfg("train.epochs=2", "num_steps=4")
    s1 = train(cfg, tmp_path / "a")
    s2 = train(cfg, tmp_path / "b")
    a, b = pd.read_csv(tmp_path / "a" / "losses.csv"), pd.read_csv(tmp_path / "b" / "losses.csv")
    assert list(a.columns) == ["epoch", "data_start", "data_end", "loss", "updates", "elapsed_s"]
    # 100,000 / 200 rows = 500 positions per row: 10 blocks of 50 positions (10,000 steps) per epoch;
    # epoch 1 starts at data.length = 100,000; windows of 4: updates ceil(50 k / 4), 125 per epoch
    assert a["data_start"].tolist() == [e * 100_000 + k * 10_000 for e in (0, 1) for k in range(10)]
    assert a["updates"].tolist() == [e * 125 + -(-50 * k // 4) for e in (0, 1) for k in range(1, 11)]
    pd.testing.assert_frame_equal(a.drop(columns="elapsed_s"), b.drop(columns="elapsed_s"), check_exact=True)
    assert s1["learned_fraction"] == s2["learned_fraction"] and s1["heldout_loss"] == s2["heldout_loss"]
    saved = json.loads((tmp_path / "a" / "summary.json").read_text())
    for key in ("status", "final_loss", "heldout_loss", "levels", "timings", "versions", "config", "learned_fraction"):
        assert key in saved
    # the last 10% of the 1,000 trained positions per row = epoch 1's last two blocks of 50
    assert saved["status"] == "completed" and saved["final_loss"] == pytest.approx(a["loss"].iloc[-2:].mean(), rel=1e-6)
    assert "tensorflow" in saved["versions"]
    with pytest.raises(FileExistsError):
        train(cfg, tmp_path / "a")


def test_divergence_is_recorded(tmp_path):
    from rnn_sweep.run.train import train

    s = train(small_cfg("train.optimizer.name=sgd", "train.optimizer.lr=1e6", "train.diverge_loss=5"), tmp_path)
    # small data: 500 positions per row, windows of 5; the first block of 50 positions = update 10
    assert s["status"] == "diverged" and s["diverged_at_step"] == 10


@pytest.mark.parametrize("seed", [0, 1])
def test_learns_lag3_only_at_article_setting(tmp_path, seed):
    from rnn_sweep.run.train import train

    cfg = small_cfg("num_steps=5", "state_size=4", "data.length=200000", "train.epochs=3", f"seed={seed}")
    s = train(cfg, tmp_path)
    tail = pd.read_csv(tmp_path / "losses.csv")["loss"].tail(3).mean()
    assert abs(tail - 0.5192) < 0.02 and tail > 0.4545 + 0.04
    assert abs(s["heldout_loss"] - 0.5192) < 0.02
    assert s["learned_fraction"]["3"] > 0.9 and s["learned_fraction"]["8"] < 0.2


def test_learns_both_dependencies_with_longer_truncation(tmp_path):
    from rnn_sweep.run.train import train

    cfg = small_cfg("num_steps=10", "state_size=16", "data.length=400000", "train.epochs=4")
    s = train(cfg, tmp_path)
    tail = pd.read_csv(tmp_path / "losses.csv")["loss"].tail(3).mean()
    assert tail < 0.48 and s["heldout_loss"] < 0.49
    assert s["learned_fraction"]["3"] > 0.9 and s["learned_fraction"]["8"] > 0.6


@pytest.mark.slow  # a fresh interpreter importing TensorFlow
def test_automatic_threads_is_one_intra_op_thread():
    """train.threads=0 (automatic) gives TensorFlow one intra-op thread (rnn_sweep.run.runtime.import_tf);
    an explicit number is kept. A fresh process each: the setting is fixed once TF's runtime starts."""
    import subprocess
    import sys

    code = ("from rnn_sweep.run.runtime import import_tf; tf = import_tf({}); "
            "print(tf.config.threading.get_intra_op_parallelism_threads())")
    for threads, expected in ((0, "1"), (2, "2")):
        out = subprocess.run([sys.executable, "-c", code.format(threads)], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == expected


@pytest.mark.parametrize("before, after", [
    (None, "--xla_backend_optimization_level=1"),
    ("--xla_cpu_enable_fast_math=false", "--xla_cpu_enable_fast_math=false --xla_backend_optimization_level=1"),
    ("--xla_backend_optimization_level=3", "--xla_backend_optimization_level=3"),  # the user's level wins
])
def test_xla_optimisation_level_is_added_unless_the_user_set_one(monkeypatch, before, after):
    from rnn_sweep.run import runtime

    if before is None:
        monkeypatch.delenv("XLA_FLAGS", raising=False)
    else:
        monkeypatch.setenv("XLA_FLAGS", before)
    runtime._xla_flags()
    assert os.environ["XLA_FLAGS"] == after
