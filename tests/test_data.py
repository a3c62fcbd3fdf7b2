"""Data generation and batching against a literal port of the article's code."""

from __future__ import annotations

import numpy as np
import pytest

from rnn_sweep.task import data
from rnn_sweep.task.config import DataConfig, Dependency


def article_gen_data(X: np.ndarray, U: np.ndarray) -> np.ndarray:
    """The article's gen_data loop, verbatim except that its random draws are passed in."""
    Y = []
    for i in range(len(X)):
        threshold = 0.5
        if X[i - 3] == 1:
            threshold += 0.5
        if X[i - 8] == 1:
            threshold -= 0.25
        if U[i] > threshold:
            Y.append(0)
        else:
            Y.append(1)
    return np.array(Y)


def article_gen_batch(raw_data, batch_size, num_steps):
    """The article's gen_batch, verbatim."""
    raw_x, raw_y = raw_data
    data_length = len(raw_x)
    batch_partition_length = data_length // batch_size
    data_x = np.zeros([batch_size, batch_partition_length], dtype=np.int32)
    data_y = np.zeros([batch_size, batch_partition_length], dtype=np.int32)
    for i in range(batch_size):
        data_x[i] = raw_x[batch_partition_length * i:batch_partition_length * (i + 1)]
        data_y[i] = raw_y[batch_partition_length * i:batch_partition_length * (i + 1)]
    epoch_size = batch_partition_length // num_steps
    for i in range(epoch_size):
        x = data_x[:, i * num_steps:(i + 1) * num_steps]
        y = data_y[:, i * num_steps:(i + 1) * num_steps]
        yield (x, y)


def test_wrap_mode_reproduces_article_exactly():
    rule = DataConfig(boundary="wrap")
    x, y, p = data.generate(rule, 20_000, np.random.default_rng(1))
    rng = np.random.default_rng(1)  # the same draws, in generate's order: inputs, then uniforms
    X = (rng.random(20_000, dtype=np.float32) < np.float32(0.5)).astype(np.int8)
    U = rng.random(20_000, dtype=np.float32)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, article_gen_data(X, U))
    # the wrap-around itself: Y_0 depends on X_{-3} = X[len-3]
    assert p[0] == 0.5 + 0.5 * X[-3] - 0.25 * X[-8]


def test_pad_mode_targets_never_depend_on_end_of_sequence():
    rule = DataConfig(length=50)
    rng = np.random.default_rng(2)
    x, y, p, lagged = data.generate_full(rule, 50, rng)
    # Reconstruct the padded inputs with the same generator and check every lag by hand.
    rng = np.random.default_rng(2)
    x_full = (rng.random(58, dtype=np.float32) < 0.5).astype(np.int8)
    np.testing.assert_array_equal(x, x_full[8:])
    for t in range(50):
        expected = 0.5 + 0.5 * x_full[8 + t - 3] - 0.25 * x_full[8 + t - 8]
        assert p[t] == expected
        assert lagged[0][t] == x_full[8 + t - 3] and lagged[1][t] == x_full[t]


@pytest.mark.parametrize("length,batch,steps", [(1_000_000, 200, 5), (10_007, 7, 3), (5_000, 200, 7)])
def test_windows_match_article_gen_batch(length, batch, steps):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, length).astype(np.int8)
    y = rng.integers(0, 2, length).astype(np.int8)
    ref = list(article_gen_batch((x, y), batch, steps))
    xs = data.to_windows(data.to_rows(x, batch), steps)
    ys = data.to_windows(data.to_rows(y, batch), steps)
    assert xs.shape == (len(ref), batch, steps)
    for i, (rx, ry) in enumerate(ref):
        np.testing.assert_array_equal(xs[i], rx)
        np.testing.assert_array_equal(ys[i], ry)


def test_conditional_frequencies_follow_the_rule():
    rule = DataConfig()
    x, y, _, lagged = data.generate_full(rule, 1_000_000, np.random.default_rng(4))
    assert abs(x.mean() - 0.5) < 0.003
    for a in (0, 1):
        for b in (0, 1):
            sel = (lagged[0] == a) & (lagged[1] == b)
            expected = 0.5 + 0.5 * a - 0.25 * b
            assert abs(y[sel].mean() - expected) < 0.006, (a, b)


def test_any_number_of_dependencies_and_input_probability():
    rule = DataConfig(input_prob=0.3, base_prob=0.2,
                      dependencies=[Dependency(1, 0.3), Dependency(5, 0.2), Dependency(12, 0.25)])
    x, y, _, lagged = data.generate_full(rule, 600_000, np.random.default_rng(5))
    assert abs(x.mean() - 0.3) < 0.004
    for bits in np.ndindex(2, 2, 2):
        sel = np.all([lagged[i] == bits[i] for i in range(3)], axis=0)
        expected = 0.2 + 0.3 * bits[0] + 0.2 * bits[1] + 0.25 * bits[2]
        assert abs(y[sel].mean() - expected) < 0.015, bits


def test_seeded_streams_are_reproducible_and_fresh_per_epoch():
    rule = DataConfig(length=10_000)
    a = data.epoch_windows(rule, 10_000, 20, 5, data.rng_for(7, data.TRAIN_STREAM, 0))
    b = data.epoch_windows(rule, 10_000, 20, 5, data.rng_for(7, data.TRAIN_STREAM, 0))
    c = data.epoch_windows(rule, 10_000, 20, 5, data.rng_for(7, data.TRAIN_STREAM, 1))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_pack_steps_are_each_seeds_own_draw():
    """Slice k of a pack's epoch data is exactly what the run with seeds[k] alone draws (repeats too),
    and its windows of n are the article's batching of that draw."""
    rule = DataConfig(length=6000)
    seeds = [4, 9, 4]
    xs, ys = data.pack_epoch_steps(rule, 6000, 20, seeds, epoch=2)
    assert xs.shape == ys.shape == (6000 // 20, 3, 20)
    for k, s in enumerate(seeds):
        x, y = data.epoch_windows(rule, 6000, 20, 7, data.rng_for(s, data.TRAIN_STREAM, 2))  # [W, B, 7]
        used = x.shape[0] * 7
        np.testing.assert_array_equal(xs[:used, k], x.transpose(0, 2, 1).reshape(used, 20))
        np.testing.assert_array_equal(ys[:used, k], y.transpose(0, 2, 1).reshape(used, 20))
        np.testing.assert_array_equal(data.windows_to_steps(x[:, None])[:, 0], xs[:used, k])
    assert not np.array_equal(xs[:, 0], xs[:, 1])
