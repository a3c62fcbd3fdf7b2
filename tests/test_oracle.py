"""The NumPy oracle itself: a forward pass by hand and gradients by finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnn_sweep import oracle


def _problem(seed=0, B=3, T=4, d=3):
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(0, 0.7, (2 + d, d)), "b": rng.normal(0, 0.3, d),
              "U": rng.normal(0, 0.7, (d, 2)), "c": rng.normal(0, 0.3, 2)}
    x = oracle.onehot(rng.integers(0, 2, (B, T)))
    y = rng.integers(0, 2, (B, T))
    s0 = rng.uniform(-0.9, 0.9, (B, d))
    return params, x, y, s0


def test_forward_and_loss_by_hand_for_a_one_unit_rnn():
    params = {"W": np.array([[0.5], [-0.3], [0.8]]), "b": np.array([0.1]),
              "U": np.array([[1.5, -2.0]]), "c": np.array([0.2, 0.0])}
    x = oracle.onehot(np.array([[0, 1]]))
    s1 = math.tanh(0.5 + 0.8 * 0.2 + 0.1)  # x=0 selects W[0]; s0 = 0.2
    s2 = math.tanh(-0.3 + 0.8 * s1 + 0.1)  # x=1 selects W[1]
    logits, states = oracle.forward(params, x, np.array([[0.2]]))
    np.testing.assert_allclose(states[0, :, 0], [s1, s2], rtol=1e-12)
    np.testing.assert_allclose(logits[0, 1], [1.5 * s2 + 0.2, -2.0 * s2], rtol=1e-12)
    res = oracle.window_grads(params, x, np.array([[1, 0]]), np.array([[0.2]]))

    def nll(z, k):
        return math.log(math.exp(z[0]) + math.exp(z[1])) - z[k]

    assert res.loss == pytest.approx((nll(logits[0, 0], 1) + nll(logits[0, 1], 0)) / 2, rel=1e-12)
    assert res.final_state[0, 0] == pytest.approx(s2, rel=1e-12)


def _numeric(f, arr, eps=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of arr (modified in place)."""
    out = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        up = f()
        arr[idx] = old - eps
        down = f()
        arr[idx] = old
        out[idx] = (up - down) / (2 * eps)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_finite_differences(seed):
    params, x, y, s0 = _problem(seed)
    res = oracle.window_grads(params, x, y, s0)

    def loss():
        return oracle.window_grads(params, x, y, s0).loss

    for k in oracle.PARAM_NAMES:
        np.testing.assert_allclose(res.grads[k], _numeric(loss, params[k]), atol=1e-8, rtol=1e-6, err_msg=k)
    np.testing.assert_allclose(res.d_inputs, _numeric(loss, x), atol=1e-8, rtol=1e-6)
    np.testing.assert_allclose(res.d_state0, _numeric(loss, s0), atol=1e-8, rtol=1e-6)
    np.testing.assert_array_equal(oracle.input_gradients(params, x, y, s0), res.d_inputs)


def test_tf_style_windows_carry_the_state_but_not_the_gradient():
    params, _, _, _ = _problem(2, d=3)
    rng = np.random.default_rng(5)
    xs, ys = rng.integers(0, 2, (3, 2, 4)), rng.integers(0, 2, (3, 2, 4))
    results = oracle.tf_style_windows(params, xs, ys)
    # The same as one forward pass over the concatenated sequence ...
    _, states = oracle.forward(params, oracle.onehot(np.concatenate(list(xs), axis=1)), np.zeros((2, 3)))
    for i, res in enumerate(results):
        np.testing.assert_allclose(res.final_state, states[:, 4 * i + 3], rtol=1e-12)
    # ... but window 2's gradient treats its entering state as a constant.
    alone = oracle.window_grads(params, oracle.onehot(xs[2]), ys[2], states[:, 7])
    np.testing.assert_allclose(results[2].grads["W"], alone.grads["W"], rtol=1e-12)
    assert results[2].loss == pytest.approx(alone.loss, rel=1e-12)


def test_train_windows_is_tf1_adagrad():
    params, _, _, _ = _problem(3, d=2)
    rng = np.random.default_rng(1)
    xs, ys = rng.integers(0, 2, (2, 3, 4)), rng.integers(0, 2, (2, 3, 4))
    trained, losses = oracle.train_windows(params, xs, ys, lr=0.1, initial_accumulator=0.1)
    g0 = oracle.window_grads(params, oracle.onehot(xs[0]), ys[0], np.zeros((3, 2)))
    p1 = {k: params[k] - 0.1 * g0.grads[k] / np.sqrt(0.1 + g0.grads[k] ** 2) for k in params}
    g1 = oracle.window_grads(p1, oracle.onehot(xs[1]), ys[1], g0.final_state)
    for k in params:
        acc = 0.1 + g0.grads[k] ** 2 + g1.grads[k] ** 2
        np.testing.assert_allclose(trained[k], p1[k] - 0.1 * g1.grads[k] / np.sqrt(acc), rtol=1e-12)
    assert losses == pytest.approx([g0.loss, g1.loss], rel=1e-12)
