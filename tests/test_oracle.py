"""The NumPy oracle itself: a forward pass by hand and gradients by finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import oracle
from rnn_sweep.task.data import windows_to_steps


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


# ----------------------------------------------------------------------------- packs of K replicas vs the oracle

def test_reference_epoch_is_the_hand_derived_tf1_adagrad_for_the_vanilla_cell():
    params, _, _, _ = _problem(4, d=2)
    rng = np.random.default_rng(6)
    xs, ys = rng.integers(0, 2, (3, 2, 4)), rng.integers(0, 2, (3, 2, 4))
    ref, ref_losses = oracle.train_windows(params, xs, ys, lr=0.2, initial_accumulator=0.1)
    got, losses = oracle.reference_epoch("rnn", params, xs, ys, "tf", "adagrad",
                                         {"lr": 0.2, "initial_accumulator": 0.1})
    assert losses == pytest.approx(ref_losses, rel=1e-10)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-7, atol=1e-9)


PACK_SEEDS, PACK_LRS = (3, 11, 4), (0.05, 0.2, 0.1)
HP = {"initial_accumulator": 0.1, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}


def _pack_combos():
    out = []
    for style in ("tf", "true"):
        out.append(("scratch", "rnn", style, "adagrad"))
        for backend in ("static", "dynamic"):
            for cell, opt in (("rnn", "sgd"), ("gru", "adam"), ("lstm", "adagrad")):
                out.append((backend, cell, style, opt))
    return out


@pytest.mark.parametrize("backend,cell,style,opt", _pack_combos())
def test_pack_of_three_matches_the_oracle_replica_by_replica(backend, cell, style, opt):
    """K=3 replicas (other seeds, other learning rates, other data) in one compiled epoch:
    every replica's losses and trained parameters are the NumPy reference's for it alone."""
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.task.config import ModelConfig, OptimizerConfig
    from rnn_sweep.model.backends import build_backend

    d, b, n, w = 2, 3, 3, 3
    be = build_backend(ModelConfig(backend=backend, cell=cell), d)
    init = be.init_params(PACK_SEEDS)
    rng = np.random.default_rng(7)
    xs, ys = rng.integers(0, 2, (w, 3, b, n)).astype(np.int8), rng.integers(0, 2, (w, 3, b, n)).astype(np.int8)
    params = {k: tf.constant(v) for k, v in init.items()}
    hp = optim.stacked_hyperparams([OptimizerConfig(name=opt, lr=lr) for lr in PACK_LRS])
    update_every = 2 if style == "true" else None  # u < n: start states from earlier updates' positions
    fn = engine.epoch_fn(be, opt, style, xla=False, num_steps=n, update_every=update_every)
    new, _, losses, steps, _ = fn.with_step_losses(params, optim.init_state(opt, params, hp), hp,
                                                   windows_to_steps(xs), windows_to_steps(ys), be.zero_state(3, b))
    assert losses.shape == ((w if style == "tf" else w * n // 2), 3)
    assert steps.shape == ((w * n if style == "tf" else (w * n // 2) * 2), 3)
    for k, lr in enumerate(PACK_LRS):
        one = {name: v[k] for name, v in init.items()}
        ref_steps: list = []
        ref, ref_losses = oracle.reference_epoch(cell, one, xs[:, k], ys[:, k], style, opt, {"lr": lr, **HP},
                                                 update_every, step_losses=ref_steps)
        np.testing.assert_allclose(losses.numpy()[:, k], ref_losses, rtol=1e-5, err_msg=f"replica {k}")
        np.testing.assert_allclose(steps.numpy()[:, k], ref_steps, rtol=1e-5, err_msg=f"replica {k}, step losses")
        for name in ref:
            assert not np.allclose(ref[name], one[name])  # every parameter moved: the comparison has teeth
            np.testing.assert_allclose(new[name].numpy()[k], ref[name], rtol=1e-4, atol=1e-5,
                                       err_msg=f"replica {k}, {name}")


@pytest.mark.parametrize("cell,opt", [("rnn", "adagrad"), ("gru", "adam"), ("lstm", "sgd")])
def test_keras_fit_pack_members_match_the_oracle(tmp_path, cell, opt):
    """model.fit trains a pack member by member; each member is the oracle's run alone."""
    import tensorflow as tf

    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.task.config import ModelConfig, OptimizerConfig, RunConfig
    from rnn_sweep.model.backends import build_backend

    d, b, n, w = 2, 3, 3, 3
    rng = np.random.default_rng(8)
    xs, ys = rng.integers(0, 2, (w, 3, b, n)).astype(np.int8), rng.integers(0, 2, (w, 3, b, n)).astype(np.int8)
    for k, (seed, lr) in enumerate(zip(PACK_SEEDS, PACK_LRS)):
        cfg = RunConfig(model=ModelConfig(backend="keras", cell=cell), state_size=d, num_steps=n)
        cfg.train.optimizer = OptimizerConfig(name=opt, lr=lr)
        be = build_backend(cfg.model, d)
        init = be.init_params([seed])
        params = {name: tf.constant(v) for name, v in init.items()}
        hp = optim.stacked_hyperparams([cfg.train.optimizer])
        new, _, losses, steps, _ = be.make_epoch_fn(cfg).with_step_losses(
            params, optim.init_state(opt, params, hp), hp, windows_to_steps(xs[:, k:k + 1]),
            windows_to_steps(ys[:, k:k + 1]), be.zero_state(1, b))
        one = {name: v[0] for name, v in init.items()}
        ref_steps: list = []
        ref, ref_losses = oracle.reference_epoch(cell, one, xs[:, k], ys[:, k], "tf", opt, {"lr": lr, **HP},
                                                 step_losses=ref_steps)
        np.testing.assert_allclose(losses.numpy()[:, 0], ref_losses, rtol=1e-5)
        np.testing.assert_allclose(steps.numpy()[:, 0], ref_steps, rtol=1e-5)
        for name in ref:
            np.testing.assert_allclose(new[name].numpy()[0], ref[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("style,update_every", [("tf", None), ("true", None), ("true", 2)])
def test_an_epoch_made_in_segments_is_the_epoch_made_at_once(style, update_every):
    """Updates 0..a-1, then a..b-1, then the rest, each segment from the state the one before
    ended with: the same losses, step losses and trained parameters as the oracle's epoch."""
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.task.config import ModelConfig, OptimizerConfig
    from rnn_sweep.model.backends import build_backend

    d, b, n, w = 2, 3, 3, 5
    be = build_backend(ModelConfig(backend="scratch", cell="rnn"), d)
    init = be.init_params(PACK_SEEDS)
    rng = np.random.default_rng(9)
    xs, ys = rng.integers(0, 2, (w, 3, b, n)).astype(np.int8), rng.integers(0, 2, (w, 3, b, n)).astype(np.int8)
    hp = optim.stacked_hyperparams([OptimizerConfig(name="adagrad", lr=lr) for lr in PACK_LRS])
    fn = engine.epoch_fn(be, "adagrad", style, xla=False, num_steps=n, update_every=update_every)
    total = fn.updates(w * n)
    assert total == (w if style == "tf" else w * n // (update_every or n))
    params = {k: tf.constant(v) for k, v in init.items()}
    opt_state, state = optim.init_state("adagrad", params, hp), be.zero_state(3, b)
    losses, steps = [], []
    for first, stop in ((0, 2), (2, 3), (3, total)):
        params, opt_state, seg_losses, seg_steps, state = fn.with_step_losses(
            params, opt_state, hp, windows_to_steps(xs), windows_to_steps(ys), state, first=first, stop=stop)
        losses.append(seg_losses.numpy())
        steps.append(seg_steps.numpy())
    losses, steps = np.concatenate(losses), np.concatenate(steps)
    for k, lr in enumerate(PACK_LRS):
        one = {name: v[k] for name, v in init.items()}
        ref_steps: list = []
        ref, ref_losses = oracle.reference_epoch("rnn", one, xs[:, k], ys[:, k], style, "adagrad", {"lr": lr, **HP},
                                                 update_every, step_losses=ref_steps)
        np.testing.assert_allclose(losses[:, k], ref_losses, rtol=1e-5)
        np.testing.assert_allclose(steps[:, k], ref_steps, rtol=1e-5)
        for name in ref:
            np.testing.assert_allclose(params[name].numpy()[k], ref[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_keras_fit_epoch_in_segments_matches_the_oracle():
    """model.fit in three segments (the stateful layer carries its state across them): the
    oracle's epoch, losses, step losses and trained parameters."""
    import tensorflow as tf

    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.task.config import ModelConfig, OptimizerConfig, RunConfig
    from rnn_sweep.model.backends import build_backend

    d, b, n, w = 2, 3, 3, 5
    rng = np.random.default_rng(10)
    xs, ys = rng.integers(0, 2, (w, 1, b, n)).astype(np.int8), rng.integers(0, 2, (w, 1, b, n)).astype(np.int8)
    cfg = RunConfig(model=ModelConfig(backend="keras", cell="gru"), state_size=d, num_steps=n)
    cfg.train.optimizer = OptimizerConfig(name="adam", lr=0.05)
    be = build_backend(cfg.model, d)
    init = be.init_params([3])
    params = {name: tf.constant(v) for name, v in init.items()}
    hp = optim.stacked_hyperparams([cfg.train.optimizer])
    fn, opt_state, losses, steps = be.make_epoch_fn(cfg), optim.init_state("adam", params, hp), [], []
    assert fn.updates(w * n) == w
    for first, stop in ((0, 2), (2, 3), (3, w)):
        params, opt_state, seg, seg_steps, _ = fn.with_step_losses(
            params, opt_state, hp, windows_to_steps(xs), windows_to_steps(ys), be.zero_state(1, b), first, stop)
        losses.append(seg.numpy()[:, 0])
        steps.append(seg_steps.numpy()[:, 0])
    ref_steps: list = []
    ref, ref_losses = oracle.reference_epoch("gru", {k: v[0] for k, v in init.items()}, xs[:, 0], ys[:, 0], "tf",
                                             "adam", {"lr": 0.05, **HP}, step_losses=ref_steps)
    np.testing.assert_allclose(np.concatenate(losses), ref_losses, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate(steps), ref_steps, rtol=1e-5)
    for name in ref:
        np.testing.assert_allclose(params[name].numpy()[0], ref[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("backend,cell,style,opt", [("scratch", "rnn", "tf", "adagrad"), ("scratch", "rnn", "true", "adam"),
                                                     ("static", "gru", "tf", "adam"), ("dynamic", "lstm", "true", "sgd"),
                                                     ("keras", "rnn", "tf", "adagrad")])
def test_reservoir_control_freezes_the_cell_and_trains_the_output_layer_as_the_oracle(backend, cell, style, opt):
    """model.train_recurrent=false: every cell weight ends exactly at its seeded initial value (the
    trained run's start), and the output layer U, c ends where the oracle's output-only training
    puts it; with the flag on, the cell weights move (the test can fail)."""
    import tensorflow as tf

    from rnn_sweep.model import engine
    from rnn_sweep.model import optimizers as optim
    from rnn_sweep.task.config import ModelConfig, OptimizerConfig, RunConfig
    from rnn_sweep.model.backends import build_backend

    d, b, n, w = 2, 3, 3, 3
    rng = np.random.default_rng(11)
    xs, ys = rng.integers(0, 2, (w, 1, b, n)).astype(np.int8), rng.integers(0, 2, (w, 1, b, n)).astype(np.int8)
    ends = {}
    for train_recurrent in (False, True):
        cfg = RunConfig(model=ModelConfig(backend=backend, cell=cell, train_recurrent=train_recurrent),
                        state_size=d, num_steps=n)
        cfg.train.optimizer = OptimizerConfig(name=opt, lr=0.2)
        be = build_backend(cfg.model, d)
        init = be.init_params([5])
        params = {k: tf.constant(v) for k, v in init.items()}
        hp = optim.stacked_hyperparams([cfg.train.optimizer])
        fn = be.make_epoch_fn(cfg) if backend == "keras" else engine.epoch_fn(
            be, opt, style, xla=False, num_steps=n, frozen=engine.frozen_params(train_recurrent))
        new, _, _, _ = fn(params, optim.init_state(opt, params, hp), hp, windows_to_steps(xs), windows_to_steps(ys),
                          be.zero_state(1, b))
        ends[train_recurrent] = {k: v.numpy()[0] for k, v in new.items()}
    cell_names = [k for k in init if k not in ("U", "c")]
    for k in cell_names:
        np.testing.assert_array_equal(ends[False][k], init[k][0], err_msg=k)  # exactly, not approximately
        assert not np.allclose(ends[True][k], init[k][0]), k
    ref, _ = oracle.reference_epoch(cell, {k: v[0] for k, v in init.items()}, xs[:, 0], ys[:, 0], style, opt,
                                    {"lr": 0.2, **HP}, trainable=("U", "c"))
    for k in ("U", "c"):
        assert not np.allclose(ref[k], init[k][0]), k
        np.testing.assert_allclose(ends[False][k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)
