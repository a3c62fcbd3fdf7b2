"""Truncation styles: which inputs each loss reaches, and exact parameter updates.

The references here are independent: a NumPy BPTT written out per loss (no
batching of sub-sequences, no masking tricks), and the definitions of the two
styles read straight from r2rt / Williams & Peng:

* TF style BPTT(n, n): windows of n, state carried with the gradient stopped;
  loss at window position j reaches the j+1 inputs of its window only.
* true BPTT(n, 1): loss at step t reaches exactly x_{t-n+1..t} (x_{0..t} near a
  row start), from the stopped state S_{t-n}; one update per u steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from rnn_sweep.task.config import ConfigError, ModelConfig, OptimizerConfig, RunConfig, validate

# ----------------------------------------------------------------------------- NumPy reference


def np_cell(P, x_t, s):
    """One step of the article's cell: tanh([onehot(x_t); s] W + b)."""
    return np.tanh(np.concatenate([np.eye(2)[x_t], s], axis=1) @ P["W"] + P["b"])


def np_bptt(P, x, s0, y, weight):
    """Gradients of sum_t weight[:, t] * CE_t over one unrolled segment, by hand.

    x, y int [B, T]; s0 [B, d] (a constant); weight [B, T].
    Returns (dict of gradients, summed weighted loss, final state).
    """
    W, U, c = P["W"], P["U"], P["c"]
    states, s = [s0], s0
    for t in range(x.shape[1]):
        s = np_cell(P, x[:, t], s)
        states.append(s)
    g = {k: np.zeros_like(v) for k, v in P.items()}
    ds_next, total = np.zeros_like(s0), 0.0
    for t in reversed(range(x.shape[1])):
        s_t, s_prev = states[t + 1], states[t]
        z = s_t @ U + c
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        total += float(np.sum(weight[:, t] * -np.log(p[np.arange(len(p)), y[:, t]])))
        dz = (p - np.eye(2)[y[:, t]]) * weight[:, t, None]
        g["U"] += s_t.T @ dz
        g["c"] += dz.sum(0)
        da = (dz @ U.T + ds_next) * (1 - s_t ** 2)
        g["W"] += np.concatenate([np.eye(2)[x[:, t]], s_prev], axis=1).T @ da
        g["b"] += da.sum(0)
        ds_next = da @ W[2:].T
    return g, total, states[-1]


def np_tf_style_epoch(P, rows_x, rows_y, n, lr):
    """SGD over TF-style windows; returns (params, losses per window)."""
    P = {k: v.copy() for k, v in P.items()}
    b, L = rows_x.shape
    s, losses = np.zeros((b, P["b"].size)), []
    for w in range(L // n):
        sl = slice(w * n, (w + 1) * n)
        g, loss, s_new = np_bptt(P, rows_x[:, sl], s, rows_y[:, sl], np.full((b, n), 1 / (b * n)))
        P = {k: P[k] - lr * g[k] for k in P}
        s, losses = s_new, losses + [loss]
    return P, losses


def np_true_epoch(P, rows_x, rows_y, n, u, lr):
    """SGD with true BPTT(n, 1), one loss at a time; returns (params, losses per update).

    Start states: a forward pass lagging n steps behind the losses, carried
    across updates, run with the parameters of the current update.
    """
    P = {k: v.copy() for k, v in P.items()}
    b, L = rows_x.shape
    carry, losses = np.zeros((b, P["b"].size)), []
    for k in range(L // u):
        t0, starts = k * u, []
        for j in range(u):
            if t0 - n + j >= 0:
                carry = np_cell(P, rows_x[:, t0 - n + j], carry)
            starts.append(carry)
        g_sum, loss_sum = {key: np.zeros_like(v) for key, v in P.items()}, 0.0
        for j in range(u):
            t = t0 + j
            lo = max(t - n + 1, 0)  # history before the row start does not exist
            s0 = starts[j] if lo > 0 else np.zeros_like(carry)
            weight = np.zeros((b, t + 1 - lo))
            weight[:, -1] = 1 / (b * u)
            g, loss, _ = np_bptt(P, rows_x[:, lo:t + 1], s0, rows_y[:, lo:t + 1], weight)
            g_sum = {key: g_sum[key] + g[key] for key in P}
            loss_sum += loss
        P = {key: P[key] - lr * g_sum[key] for key in P}
        losses.append(loss_sum)
    return P, losses


# ----------------------------------------------------------------------------- fixtures


def _params(d, seed=0):
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(0, 0.8, (2 + d, d)), "b": rng.normal(0, 0.3, d),
            "U": rng.normal(0, 0.8, (d, 2)), "c": rng.normal(0, 0.3, 2)}


def _data(b, length, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, (b, length)).astype(np.int8), rng.integers(0, 2, (b, length)).astype(np.int8)


def _backend(name, d, cell="rnn"):
    from rnn_sweep.model.backends import build_backend

    return build_backend(ModelConfig(backend=name, cell=cell), d)


def _run_epoch(backend, style, P, rows_x, rows_y, n, lr, update_every=None, xla=False):
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim

    params = {k: tf.constant(v[None], tf.float32) for k, v in P.items()}  # a pack of one
    hp = optim.stacked_hyperparams([OptimizerConfig(name="sgd", lr=lr)])
    fn = engine.epoch_fn(backend, "sgd", style, xla, n, update_every=update_every)
    steps_x, steps_y = (np.ascontiguousarray(r.T[:, None, :]) for r in (rows_x, rows_y))  # [L, 1, B]
    new, _, losses, _ = fn(params, optim.init_state("sgd", params, hp), hp, steps_x, steps_y,
                           backend.zero_state(1, rows_x.shape[0]))
    return {k: v.numpy()[0] for k, v in new.items()}, losses.numpy()[:, 0]


# ----------------------------------------------------------------------------- parameter updates


@pytest.mark.parametrize("n, windows", [(1, 5), (3, 4), (5, 3), (32, 2), (33, 2)])
def test_tf_style_epoch_matches_numpy_bptt(n, windows):
    """Also at n = 32, the largest n of the first compiled program (buffer of 32 states), and
    n = 33, the first of the next (64)."""
    P = _params(3)
    rows_x, rows_y = _data(4, n * windows)
    new, losses = _run_epoch(_backend("scratch", 3), "tf", P, rows_x, rows_y, n, lr=0.3)
    ref, ref_losses = np_tf_style_epoch(P, rows_x, rows_y, n, lr=0.3)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for k in P:
        assert not np.allclose(ref[k], P[k])  # every parameter moved: the comparison has teeth
        np.testing.assert_allclose(new[k], ref[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n, windows, update_every, xla", [
    (1, 6, None, False), (3, 4, None, False), (4, 5, None, True),  # u = n (default)
    (5, 3, 2, False),  # u < n: start states come from earlier updates' positions
    (2, 6, 3, False),  # u > n, and u does not divide the row (leftover steps dropped)
])
def test_true_style_epoch_matches_numpy_per_loss_bptt(n, windows, update_every, xla):
    P = _params(3)
    rows_x, rows_y = _data(4, n * windows)
    u = update_every or n
    new, losses = _run_epoch(_backend("scratch", 3), "true", P, rows_x, rows_y, n, 0.3, update_every, xla)
    ref, ref_losses = np_true_epoch(P, rows_x, rows_y, n, u, lr=0.3)
    assert len(losses) == (n * windows) // u
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for k in P:
        assert not np.allclose(ref[k], P[k])
        np.testing.assert_allclose(new[k], ref[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n, update_every, block, d", [
    (4, None, 4, 3), (5, 2, 8, 20), (2, 5, 2, 12), (9, None, 16, 20), (3, None, 16, 3), (1, None, 1, 3)])
def test_true_style_by_blocks_is_the_unrolled_sub_sequences(n, update_every, block, d):
    """The scratch cell's true BPTT (one trajectory, the update's sub-sequences as one block,
    :func:`truncation.true_block_grad_steps`, n a runtime number up to the block size) against
    the unrolled sub-sequences with autodiff (:func:`truncation.true_grad_steps`, what the
    Keras cells use, built for that n) for a pack of two: every update's losses, per-step
    losses and gradients, and the carried state, from the row start (t < n-1) on; d = 12
    and 20 take the matmul branches the NumPy epoch test (d = 3) does not."""
    import tensorflow as tf

    from rnn_sweep.model import truncation

    k, b = 2, 3
    be = _backend("scratch", d)
    params = {name: tf.constant(v) for name, v in be.init_params([0, 1]).items()}
    rows_x, rows_y = _data(k * b, 4 * max(n, update_every or n) + 3)
    xs, ys = (tf.constant(r.reshape(k, b, -1).transpose(2, 0, 1)) for r in (rows_x, rows_y))  # [C, K, B] int8
    state = tuple(tf.random.stateless_uniform(s.shape, [5, 6], -0.5, 0.5) for s in be.zero_state(k, b))
    u = update_every or n
    ref_updates, _, ref_step, ref_carry = truncation.true_grad_steps(be, xs, ys, n, state, update_every)
    updates, _, step, carry = truncation.true_block_grad_steps(be, xs, ys, tf.constant(n), state, block, update_every)
    assert int(updates) == ref_updates >= 3
    for i in range(ref_updates):
        ref_losses, ref_cells, ref_grads, ref_carry = ref_step(tf.constant(i), params, ref_carry)
        losses, cells, grads, carry = step(tf.constant(i), params, carry)
        np.testing.assert_allclose(losses.numpy(), ref_losses.numpy(), rtol=1e-5)
        np.testing.assert_allclose(cells.numpy()[:u], ref_cells.numpy(), rtol=1e-5)
        assert not np.any(cells.numpy()[u:])  # rows past u (block > n) stay zero
        for name in params:
            assert np.any(np.abs(ref_grads[name].numpy()) > 1e-4), name  # teeth
            np.testing.assert_allclose(grads[name].numpy(), ref_grads[name].numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"update {i}: {name}")
        for s, r in zip(truncation.final_state(be, "true", carry), ref_carry[0]):
            np.testing.assert_allclose(s.numpy(), r.numpy(), atol=1e-6)


def test_styles_agree_on_a_rows_first_window_and_differ_after():
    """At a row start both styles see only x_0..x_t, so the first update is the same;
    from the second window on, true BPTT sends errors further back."""
    P = _params(3)
    rows_x, rows_y = _data(4, 8)
    be = _backend("scratch", 3)
    for length, same in ((4, True), (8, False)):
        a, _ = _run_epoch(be, "tf", P, rows_x[:, :length], rows_y[:, :length], 4, 0.3)
        b, _ = _run_epoch(be, "true", P, rows_x[:, :length], rows_y[:, :length], 4, 0.3)
        assert np.allclose(a["W"], b["W"], rtol=1e-5, atol=1e-7) == same


@pytest.mark.parametrize("backend", ["static", "dynamic"])
def test_true_style_runs_on_keras_cell_backends(backend):
    """The Keras-cell backends (canonical rnn layout) give the NumPy reference's updates too."""
    P = _params(3)
    rows_x, rows_y = _data(3, 12)
    new, losses = _run_epoch(_backend(backend, 3), "true", P, rows_x, rows_y, 3, 0.3)
    ref, ref_losses = np_true_epoch(P, rows_x, rows_y, 3, 3, lr=0.3)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for k in P:
        np.testing.assert_allclose(new[k], ref[k], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- which inputs each loss reaches


def _reach(grad):
    """[B, L, 2] input gradient -> bool [B, L]: positions with any non-zero gradient."""
    return np.any(grad != 0.0, axis=-1)


@pytest.mark.parametrize("backend, cell", [("scratch", "rnn"), ("static", "lstm"), ("dynamic", "gru")])
def test_tf_style_window_is_autodiff_through_the_window_alone(backend, cell):
    """The cell-by-cell window gradient (forward, then one vector-Jacobian product per cell in
    reverse) equals plain autodiff through the window unrolled from its constant entering
    state, for a pack of two, at a window that does not start the row; earlier inputs change
    the entering state but get no gradient."""
    import tensorflow as tf

    from rnn_sweep.model import truncation

    n, b, k, d, t0 = 4, 3, 2, 3, 4
    be = _backend(backend, d, cell)
    params = {name: tf.constant(v) for name, v in be.init_params([0, 1]).items()}
    rows_x, rows_y = _data(k * b, 3 * n)
    steps_x = tf.one_hot(rows_x.reshape(k, b, 3 * n).transpose(2, 0, 1).astype(np.int32), 2)  # [C, K, B, 2]
    steps_y = tf.constant(rows_y.reshape(k, b, 3 * n).transpose(2, 0, 1).astype(np.int32))
    entering = tuple(tf.random.stateless_uniform(s.shape, [3, 4], -0.5, 0.5) for s in be.zero_state(k, b))
    inner = truncation.cell_state(be, entering)  # the layout the backend steps cells in
    losses, cells, grads, (end, _) = truncation.tf_style_window(
        be, params, steps_x, steps_y, tf.constant(t0), tf.constant(n), inner, truncation.state_buffers(inner, 8))
    end = truncation.row_state(be, end)
    with tf.GradientTape() as tape:  # the second implementation: autodiff through the static unroll
        tape.watch(params)
        x = tf.transpose(steps_x[t0:t0 + n], [1, 2, 0, 3])  # [K, B, n, 2]
        logits, ref_end = be.unroll(params, x, entering)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.transpose(steps_y[t0:t0 + n], [1, 2, 0]),
                                                            logits=logits)
        ref_losses = tf.reduce_mean(ce, axis=[1, 2])
        total = tf.reduce_sum(ref_losses)
    ref_grads = tape.gradient(total, params)
    np.testing.assert_allclose(losses.numpy(), ref_losses.numpy(), rtol=1e-6)
    # Per-cell losses: each position's mean over the B rows, then zeros past n in the buffer.
    np.testing.assert_allclose(cells.numpy()[:n], tf.reduce_mean(ce, axis=1).numpy().T, rtol=1e-6)
    assert cells.shape == (8, k) and not np.any(cells.numpy()[n:])
    for s, r in zip(end, ref_end):
        np.testing.assert_allclose(s.numpy(), r.numpy(), atol=1e-6)
    for name in params:
        assert np.any(np.abs(ref_grads[name].numpy()) > 1e-4), name  # every parameter gets gradient: teeth
        np.testing.assert_allclose(grads[name].numpy(), ref_grads[name].numpy(), rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("d, given_output", [(3, False), (6, True), (20, False), (20, True)])  # every fused /
# matmul branch of the scratch products, with the cell's output state recomputed or handed in
def test_scratch_cell_gradient_by_hand_is_autodiff(d, given_output):
    """The scratch backend's hand-derived cell gradient (what TF-style windows use for it, in
    its batch-innermost [K, d, B] layout) against TensorFlow's autodiff through ``unroll``
    ([K, B, d]) for one step: the cell's loss, the gradient of every parameter and of the
    entering state, with a gradient arriving from later cells."""
    import tensorflow as tf

    from rnn_sweep.model.scratch import ScratchBackend

    k, b, scale = 2, 5, 0.25
    be = ScratchBackend(d)
    params = {name: tf.constant(v) for name, v in be.init_params([0, 1]).items()}
    rng = np.random.default_rng(d)
    x = tf.one_hot(rng.integers(0, 2, (k, b)), 2)
    y = tf.constant(rng.integers(0, 2, (k, b)), tf.int32)
    s0 = tf.constant(rng.uniform(-0.5, 0.5, (k, b, d)), tf.float32)
    ds = tf.constant(rng.normal(0, 0.3, (k, b, d)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch((params, s0))
        logits, (s1,) = be.unroll(params, x[:, :, None], (s0,))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits[:, :, 0])
        ref_step = tf.reduce_mean(ce, axis=1)
        total = tf.reduce_sum(ref_step) * scale
    ref_params, ref_ds0 = tape.gradient([total, s1], (params, s0), output_gradients=[tf.ones_like(total), ds])

    def t(a):  # [K, B, d] <-> [K, d, B]
        return tf.transpose(a, [0, 2, 1])

    s_out = (t(s1),) if given_output else None
    step, grads, (ds0,) = be.cell_vjp(params, x[..., 1], y, (t(s0),), (t(ds),), scale, s_out=s_out)
    ds0 = t(ds0)
    np.testing.assert_allclose(step.numpy(), ref_step.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ds0.numpy(), ref_ds0.numpy(), rtol=1e-5, atol=1e-7)
    for name in params:
        assert np.any(np.abs(ref_params[name].numpy()) > 1e-4), name  # every parameter gets gradient: teeth
        np.testing.assert_allclose(grads[name].numpy(), ref_params[name].numpy(), rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("n, u, t0, backend, cell", [
    (4, 4, 0, "scratch", "rnn"),   # row start: shorter history for t < n-1
    (4, 4, 8, "scratch", "rnn"),
    (5, 2, 6, "scratch", "rnn"),   # u < n
    (2, 5, 4, "scratch", "rnn"),   # u > n
    (3, 3, 3, "static", "lstm"),   # two-tensor state
    (3, 3, 6, "dynamic", "gru"),
])
def test_true_style_loss_reaches_exactly_n_inputs(n, u, t0, backend, cell):
    import tensorflow as tf

    from rnn_sweep.model.truncation import start_states, true_step_losses

    b, length, d, k = 2, 14, 3, 2  # a pack of two: no loss may reach the other replica's inputs
    be = _backend(backend, d, cell)
    params = {name: tf.constant(v) for name, v in be.init_params([0, 1]).items()}
    rows_x, rows_y = _data(k * b, length)
    rows_x, rows_y = rows_x.reshape(k, b, length), rows_y.reshape(k, b, length)
    x = tf.one_hot(rows_x.astype(np.int32), 2)
    state = tuple(tf.random.stateless_uniform(s.shape, [1, 2], -0.5, 0.5) for s in be.zero_state(k, b))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        starts, _ = start_states(be, params, x, state, t0, u, n)
        losses = true_step_losses(be, params, x, rows_y.astype(np.int32), starts, t0, u, n)  # [K, u, B]
        per_loss = {(r, j, i): losses[r, j, i] for r in range(k) for j in range(u) for i in range(b)}
    for (r, j, i), loss in per_loss.items():
        t = t0 + j
        expected = np.zeros((k, b, length), bool)
        expected[r, i, max(t - n + 1, 0):t + 1] = True  # 0 <= k < n; exactly zero for k >= n
        np.testing.assert_array_equal(_reach(tape.gradient(loss, x).numpy()), expected,
                                      err_msg=f"replica {r}, t={t}, row {i}")


# ----------------------------------------------------------------------------- configuration


def test_true_style_config_composes_and_validates():
    from conftest import small_cfg

    cfg = small_cfg("truncation=true_bptt", "num_steps=7")
    assert cfg.truncation.style == "true" and cfg.truncation.update_every is None
    assert small_cfg("truncation=true_bptt", "truncation.update_every=3").truncation.update_every == 3


@pytest.mark.parametrize("overrides, message", [
    ({"model": ModelConfig(backend="keras"), "style": "true"},
     "truncation.style='true' is invalid: model.backend='keras'"),
    ({"style": "True"}, "truncation.style='True' is invalid: write truncation=true_bptt"),
    ({"style": "tff"}, "truncation.style='tff' is invalid: allowed values are tf, true"),
    ({"style": "tf", "update_every": 4}, "truncation.update_every=4 is invalid: only truncation.style=true"),
    ({"style": "true", "update_every": 0}, "truncation.update_every=0 is invalid: must be a positive integer"),
    ({"style": "true", "update_every": 10**6}, "truncation.update_every=1000000 is invalid: must be <="),
])
def test_bad_truncation_settings_fail_with_one_line(overrides, message):
    cfg = RunConfig()
    cfg.model = overrides.get("model", cfg.model)
    cfg.truncation.style = overrides["style"]
    cfg.truncation.update_every = overrides.get("update_every")
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as err:
        validate(cfg)
    assert "\n" not in str(err.value)


def test_keras_fit_backend_still_takes_tf_style():
    cfg = RunConfig()
    cfg.model = ModelConfig(backend="keras")
    validate(cfg)


def test_train_runs_true_style_with_its_own_update_count(tmp_path):
    """End to end through train(): u=3 steps per update on rows of 1000 -> 333 updates."""
    import pandas as pd

    from conftest import small_cfg
    from rnn_sweep.run.train import train

    cfg = small_cfg("truncation=true_bptt", "num_steps=5", "truncation.update_every=3", "state_size=3",
                    "data.length=20000", "data.eval_length=2000", "train.batch_size=20")
    summary = train(cfg, tmp_path)
    losses = pd.read_csv(tmp_path / "losses.csv")
    assert summary["style"] == "true" and summary["status"] == "completed"
    # 1000 positions per row, u=3 -> 333 updates train 999 positions (the last one dropped).
    # Grid: 10,000 // 20 = 500 positions per block -> [0, 500) and the partial [500, 999);
    # updates done at their ends: ceil(500 / 3) = 167 and ceil(999 / 3) = 333; data = positions * 20.
    assert summary["steps"] == 333 and summary["data_steps"] == 999 * 20
    assert losses["data_start"].tolist() == [0, 10_000] and losses["data_end"].tolist() == [10_000, 19_980]
    assert losses["updates"].tolist() == [167, 333] and np.all(np.isfinite(losses["loss"]))
