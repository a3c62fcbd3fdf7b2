"""Every backend against independent references: the NumPy oracle (vanilla RNN), NumPy
GRU/LSTM equations (gated cells), and each other's learning levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import small_cfg
import oracle
from rnn_sweep.task.config import ConfigError, ModelConfig
from rnn_sweep.task.data import windows_to_steps
from rnn_sweep.model.inits import vanilla_init
from rnn_sweep.model.backends import build_backend

VANILLA = ["scratch", "static", "dynamic", "keras"]
KERAS_BASED = ["static", "dynamic", "keras"]


def _params(seed=1, d=4):
    """Seeded canonical weights with non-zero biases (zeros would hide a missing bias)."""
    p = vanilla_init(seed, d)
    rng = np.random.default_rng(seed + 100)
    p["b"] = rng.normal(0, 0.3, d).astype(np.float32)
    p["c"] = rng.normal(0, 0.3, 2).astype(np.float32)
    return p


def _windows(W=4, B=6, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, (W, B, n)).astype(np.int8), rng.integers(0, 2, (W, B, n)).astype(np.int8)


def _keras_fit(cell="rnn", d=4, *overrides):
    from rnn_sweep.model.keras_fit import KerasFit

    cfg = small_cfg("model=keras", f"model.cell={cell}", f"state_size={d}", *overrides)
    return KerasFit(build_backend(cfg.model, d), cfg)


def _functional_window_grads(name, params, xs, ys):
    """Per-window (loss, grads, dL/dx), state carried; eager (test_training_epoch_* runs XLA)."""
    import tensorflow as tf

    be = build_backend(ModelConfig(backend=name), params["W"].shape[1])

    def run(params, xs, ys):  # a pack of one: leading replica axis of size 1
        state, out = be.zero_state(1, xs.shape[1]), []
        for i in range(xs.shape[0]):
            x = tf.one_hot(tf.cast(xs[i], tf.int32), 2)[None]
            with tf.GradientTape() as tape:
                tape.watch([params, x])
                logits, new_state = be.unroll(params, x, state)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.cast(ys[i], tf.int32)[None], logits=logits))
            grads, dx = tape.gradient(loss, [params, x])
            out.append((loss, grads, dx[0]))
            state = tuple(tf.stop_gradient(s) for s in new_state)
        return out

    res = run({k: tf.constant(v[None]) for k, v in params.items()}, tf.constant(xs), tf.constant(ys))
    return [(float(l), {k: g.numpy()[0] for k, g in gr.items()}, dx.numpy()) for l, gr, dx in res]


def _keras_model_window_grads(params, xs, ys):
    """The same through the keras backend's stateful model (eager, the layer carries the state)."""
    import tensorflow as tf

    fit = _keras_fit()
    fit._build(xs.shape[1], xs.shape[2], xs.shape[0])
    fit.set_params(params)
    fit.rnn.reset_state()
    names = {id(v): n for n, v in [("kernel", fit.rnn.cell.kernel), ("recurrent_kernel", fit.rnn.cell.recurrent_kernel),
                                   ("bias", fit.rnn.cell.bias), ("U", fit.dense.kernel), ("c", fit.dense.bias)]}
    out = []
    for x_int, y in zip(xs, ys):
        x = tf.one_hot(tf.cast(x_int, tf.int32), 2)
        variables = fit.model.trainable_variables
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(y, tf.int32), logits=fit.model(x, training=True)))
        *grads, dx = tape.gradient(loss, [*variables, x])
        g = {names[id(v)]: gr.numpy() for v, gr in zip(variables, grads)}
        g["W"] = np.concatenate([g.pop("kernel"), g.pop("recurrent_kernel")])
        g["b"] = g.pop("bias")
        out.append((float(loss), g, dx.numpy()))
    return out


@pytest.mark.parametrize("name", VANILLA)
def test_window_loss_and_gradients_match_the_oracle(name):
    params = _params()
    xs, ys = _windows()
    ref = oracle.tf_style_windows(params, xs, ys)
    got = _keras_model_window_grads(params, xs, ys) if name == "keras" else \
        _functional_window_grads(name, params, xs, ys)
    for i, ((loss, grads, dx), r) in enumerate(zip(got, ref)):
        assert loss == pytest.approx(r.loss, abs=1e-5), f"window {i}"
        for k in oracle.PARAM_NAMES:
            np.testing.assert_allclose(grads[k], r.grads[k], atol=1e-4, err_msg=f"window {i}, d{k}")
        np.testing.assert_allclose(dx, r.d_inputs, atol=1e-4, err_msg=f"window {i}, dx")


def _epoch(name, params, xs, ys, opt="adagrad", lr=0.1):
    """One training epoch the way train() runs it for this backend."""
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim

    cfg = small_cfg(f"model={name}", f"train.optimizer.name={opt}", f"train.optimizer.lr={lr}",
                    f"num_steps={xs.shape[2]}")
    be = build_backend(cfg.model, 4)
    p = {k: tf.constant(v[None]) for k, v in params.items()}  # a pack of one
    hp = optim.stacked_hyperparams([cfg.train.optimizer])
    st = optim.init_state(opt, p, hp)
    fn = be.make_epoch_fn(cfg) if name == "keras" else engine.epoch_fn(be, opt, "tf", True, xs.shape[2])
    new, _, losses, _ = fn(p, st, hp, windows_to_steps(xs[:, None]), windows_to_steps(ys[:, None]),
                           be.zero_state(1, xs.shape[1]))
    return {k: v.numpy()[0] for k, v in new.items()}, losses.numpy()[:, 0]


@pytest.mark.parametrize("name", VANILLA)
def test_training_epoch_matches_oracle_adagrad(name):
    params = _params(2)
    xs, ys = _windows(W=5, B=8, seed=3)
    ref_params, ref_losses = oracle.train_windows(params, xs, ys, lr=0.1, initial_accumulator=0.1)
    new, losses = _epoch(name, params, xs, ys)
    np.testing.assert_allclose(losses, ref_losses, atol=1e-5)
    for k in oracle.PARAM_NAMES:
        np.testing.assert_allclose(new[k], ref_params[k], atol=2e-5, err_msg=k)


@pytest.mark.parametrize("opt,lr", [("sgd", 0.5), ("adam", 0.01)])
def test_keras_optimizers_have_the_functional_update_rules(opt, lr):
    params = _params(4)
    xs, ys = _windows(W=4, B=8, seed=4)
    ours, _ = _epoch("scratch", params, xs, ys, opt, lr)  # optim.py, checked against TF1 in test_train
    keras_params, _ = _epoch("keras", params, xs, ys, opt, lr)
    for k in oracle.PARAM_NAMES:
        np.testing.assert_allclose(keras_params[k], ours[k], atol=2e-5, err_msg=k)


def test_same_seed_gives_every_vanilla_backend_the_same_start():
    ref = vanilla_init(7, 5)
    for name in KERAS_BASED:
        p = build_backend(ModelConfig(backend=name), 5).init_params([3, 7])
        for k in ref:
            np.testing.assert_array_equal(p[k][1], ref[k], err_msg=f"{name}: {k}")
    fit = _keras_fit("rnn", 5)
    fit._build(3, 2, 1)
    fit.set_params(ref)
    np.testing.assert_array_equal(fit.rnn.cell.kernel.numpy(), ref["W"][:2])
    np.testing.assert_array_equal(fit.rnn.cell.recurrent_kernel.numpy(), ref["W"][2:])
    np.testing.assert_array_equal(fit.dense.kernel.numpy(), ref["U"])
    for k, v in fit.get_params().items():
        np.testing.assert_array_equal(v, ref[k])


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_gated(cell, p, x, state):
    """Keras' GRU (reset_after=True) and LSTM equations written out in NumPy (float64)."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    h, c = (np.asarray(s, np.float64) for s in state) if cell == "lstm" else (np.asarray(state[0], np.float64), None)
    outs = []
    for t in range(x.shape[1]):
        if cell == "gru":
            xz, xr, xh = np.split(x[:, t] @ p["kernel"] + p["bias"][0], 3, axis=1)
            rz, rr, rh = np.split(h @ p["recurrent_kernel"] + p["bias"][1], 3, axis=1)
            z, r = _sigmoid(xz + rz), _sigmoid(xr + rr)
            h = z * h + (1 - z) * np.tanh(xh + r * rh)
        else:
            i, f, g, o = np.split(x[:, t] @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"], 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs, 1) @ p["U"] + p["c"], (h,) if cell == "gru" else (h, c)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_cells_match_numpy_equations(cell):
    import tensorflow as tf

    d, B, T = 3, 4, 5
    rng = np.random.default_rng(9)
    p = build_backend(ModelConfig(backend="static", cell=cell), d).init_params([0])
    p = {k: (v[0] + rng.normal(0, 0.3, v[0].shape)).astype(np.float32) for k, v in p.items()}  # all entries matter
    x = np.eye(2, dtype=np.float32)[rng.integers(0, 2, (B, T))]
    state = tuple(rng.uniform(-0.8, 0.8, (B, d)).astype(np.float32) for _ in range(2 if cell == "lstm" else 1))
    ref_logits, ref_state = numpy_gated(cell, p, x, state)
    oracle_logits, oracle_state = oracle.cell_forward(cell, p, x, state)  # the oracle's own copy of the equations
    np.testing.assert_allclose(oracle_logits, ref_logits, rtol=1e-12)
    for s, r in zip(oracle_state, ref_state):
        np.testing.assert_allclose(s, r, rtol=1e-12)
    for name in KERAS_BASED:  # keras evaluates through the dynamic backend's unroll; a pack of one
        be = build_backend(ModelConfig(backend=name, cell=cell), d)
        logits, new_state = tf.function(be.unroll, jit_compile=True)(
            {k: tf.constant(v[None]) for k, v in p.items()}, tf.constant(x[None]),
            tuple(tf.constant(s[None]) for s in state))
        np.testing.assert_allclose(logits.numpy()[0], ref_logits, atol=1e-5, err_msg=name)
        for s, r in zip(new_state, ref_state):
            np.testing.assert_allclose(s.numpy()[0], r, atol=1e-5, err_msg=name)
    fit = _keras_fit(cell, d)  # the model.fit path's own model, from a zero state
    fit._build(B, T, 1)
    fit.set_params(p)
    fit.rnn.reset_state()
    zero = tuple(np.zeros((B, d)) for _ in state)
    np.testing.assert_allclose(fit.model(x).numpy(), numpy_gated(cell, p, x, zero)[0], atol=1e-5)


def test_gated_init_is_keras_style_and_seeded():
    for cell, k in (("gru", 3), ("lstm", 4)):
        p = {k: v[0] for k, v in build_backend(ModelConfig(backend="dynamic", cell=cell), 4).init_params([0]).items()}
        assert p["kernel"].shape == (2, 4 * k) and p["recurrent_kernel"].shape == (4, 4 * k)
        np.testing.assert_allclose(p["recurrent_kernel"] @ p["recurrent_kernel"].T, np.eye(4), atol=1e-5)
        assert np.all(np.abs(p["kernel"]) <= np.sqrt(6 / (2 + 4 * k)))
        np.testing.assert_array_equal(p["kernel"], build_backend(ModelConfig(backend="static", cell=cell), 4)
                                      .init_params([0])["kernel"][0])
    lstm_bias = build_backend(ModelConfig(backend="keras", cell="lstm"), 4).init_params([0])["bias"][0]
    np.testing.assert_array_equal(lstm_bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])


def test_backend_cell_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"model.cell='gru' is invalid: .*scratch"):
        small_cfg("model=scratch", "model.cell=gru")
    with pytest.raises(ConfigError, match=r"model.cell='tanh' is invalid: allowed values are rnn, gru, lstm"):
        small_cfg("model=static", "model.cell=tanh")


@pytest.mark.slow
@pytest.mark.parametrize("name,cell", [(b, c) for b in KERAS_BASED for c in ("gru", "lstm")])
def test_gated_cells_train(tmp_path, name, cell):
    from rnn_sweep.run.train import train

    s = train(small_cfg(f"model={name}", f"model.cell={cell}", "train.epochs=3", "train.log_every=50"), tmp_path)
    loss = pd.read_csv(tmp_path / "losses.csv")["loss"]
    assert s["cell"] == cell and s["backend"] == name
    assert loss.iloc[-1] < loss.iloc[0] - 0.01 and s["heldout_loss"] < 0.6616 - 0.01


@pytest.mark.slow
@pytest.mark.parametrize("name", KERAS_BASED)  # scratch: tests/test_train.py
def test_learning_levels_of_the_article_settings(tmp_path, name):
    """n=5/d=4 learns lag 3 only (0.52 nats); n=10/d=16 learns both (toward 0.45)."""
    from rnn_sweep.run.train import train

    s = train(small_cfg(f"model={name}", "num_steps=5", "state_size=4", "data.length=200000", "train.epochs=3"),
              tmp_path / "short")
    tail = pd.read_csv(tmp_path / "short" / "losses.csv")["loss"].tail(3).mean()
    assert abs(tail - 0.5192) < 0.02 and abs(s["heldout_loss"] - 0.5192) < 0.02
    assert s["learned_fraction"]["3"] > 0.9 and s["learned_fraction"]["8"] < 0.2
    s = train(small_cfg(f"model={name}", "num_steps=10", "state_size=16", "data.length=400000", "train.epochs=4"),
              tmp_path / "long")
    tail = pd.read_csv(tmp_path / "long" / "losses.csv")["loss"].tail(3).mean()
    assert tail < 0.48 and s["heldout_loss"] < 0.49
    assert s["learned_fraction"]["3"] > 0.9 and s["learned_fraction"]["8"] > 0.6


@pytest.mark.parametrize("backend", ["scratch", "static"])
@pytest.mark.parametrize("columns", [37, 250])  # under one chunk; two whole chunks and a padded third
def test_held_out_predictions_are_the_numpy_forward_pass_at_any_length(backend, columns):
    """The compiled prediction (chunks of engine.PREDICT_CHUNK columns, the state handed on, the
    last chunk padded) equals the oracle's forward pass along whole rows, for a pack of two
    replicas with their own weights, from a non-zero entering state."""
    import tensorflow as tf

    from rnn_sweep.model import engine

    k, b, d = 2, 3, 4
    be = build_backend(ModelConfig(backend=backend, cell="rnn"), d)
    weights = [_params(seed, d) for seed in (1, 2)]
    params = {name: tf.constant(np.stack([w[name] for w in weights])) for name in weights[0]}
    rng = np.random.default_rng(columns)
    xs = rng.integers(0, 2, (columns, k, b)).astype(np.int8)  # [C, K, B]
    s0 = rng.uniform(-0.5, 0.5, (k, b, d)).astype(np.float32)
    p = np.asarray(engine.predict_fn(be, xla=True)(params, xs, (tf.constant(s0),)))
    assert p.shape == (columns, k, b)
    for r in range(k):
        logits, _ = oracle.forward(weights[r], oracle.onehot(xs[:, r].T), s0[r])  # [B, C, 2]
        ref = np.exp(logits[..., 1]) / np.exp(logits).sum(-1)
        np.testing.assert_allclose(p[:, r].T, ref, atol=2e-5, err_msg=f"replica {r}")
