"""True truncated BPTT(n, 1) as one compiled epoch.

TensorFlow-style truncation (``engine.tf_style_step``) cuts each row into
windows of n and lets the error at window position j flow back through j+1
cells only. "True" truncated BPTT sends EVERY error back exactly n cells: the
loss at step t gets gradient through cells t-n+1..t, starting from the
gradient-stopped state S_{t-n} before them.

One update covers u = ``update_every`` consecutive steps t0..t0+u-1 (default
u = n, so both styles make the same number of updates, each averaging the same
number of losses, B*n). It is computed without per-step weight copies or
per-loss gradient calls (r2rt's construction):

1. one forward pass WITHOUT gradient, step by step, gives the start states
   S_{t-n} of all u sub-sequences (its positions lag n behind the losses;
   its last state is carried to the next update);
2. the u sub-sequences x_{t-n+1..t} are batched into one [u*B, n] input and
   unrolled once under the gradient tape from those (stopped) states; the loss
   of sub-sequence t is taken at its last step.

Row start (the first n-1 positions of each row of an epoch): there is no
history before position 0, so a loss at t < n-1 gets gradient through the
t+1 cells 0..t from the epoch's initial state (the zero state): its
sub-sequence is x_0..x_{n-1} and the loss is read at position t (by
causality, cells after t do not affect it). This is exactly what TF style does
for the first window.

Works with any functional backend (``unroll(params, x, state)``); the
Keras ``model.fit`` backend cannot express it and is rejected by
``config.validate``.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from rnn_sweep.engine import update_loop


def windows_to_rows(xs):
    """Windows [W, B, n] back to contiguous rows [B, W*n] (the positions TF style trains on)."""
    w, b, n = xs.shape
    return tf.reshape(tf.transpose(xs, [1, 0, 2]), [b, w * n])


def subsequence_layout(t0, u: int, n: int):
    """Where the u sub-sequences of the update starting at step t0 lie.

    Returns:
        idx int32 [u, n]: row positions of each sub-sequence's inputs;
        offset int32 [u]: position inside the sub-sequence where its loss is read
        (n-1, or t for the first t < n-1 steps of a row; see module docstring).
    """
    t = t0 + tf.range(u)
    start = tf.maximum(t - (n - 1), 0)
    return start[:, None] + tf.range(n)[None, :], t - start


def start_states(backend, params, rows_1h, state, t0, u: int, n: int):
    """Forward pass without gradient over positions t0-n .. t0-n+u-1.

    ``rows_1h`` float32 [B, L, 2] are the one-hot rows; ``state`` is the state
    after position t0-n-1 (before position 0 it is the epoch's initial state,
    kept unchanged while positions are negative).

    Returns:
        (starts, carry): starts is a tuple of state tensors [u*B, ...] where row
        block j is the state after position t0+j-n, i.e. the start state of the
        sub-sequence whose loss is at t0+j; carry is the state after t0+u-n-1.
    """
    per_step = []
    for j in range(u):  # u is static; each step is a T=1 unroll of the backend
        p = t0 - n + j
        _, new = backend.unroll(params, rows_1h[:, tf.maximum(p, 0)][:, None, :], state)
        state = tuple(tf.where(p >= 0, s_new, s_old) for s_new, s_old in zip(new, state))
        per_step.append(state)
    starts = tuple(tf.stop_gradient(tf.concat([st[i] for st in per_step], axis=0))
                   for i in range(len(state)))
    return starts, tuple(tf.stop_gradient(s) for s in state)


def true_step_losses(backend, params, rows_1h, rows_y, starts, t0, u: int, n: int):
    """Losses [u, B] of the steps t0..t0+u-1, each through exactly its n cells.

    Differentiable in ``params`` and in the one-hot rows ``rows_1h`` [B, L, 2]
    (the tests check which inputs each loss reaches); ``starts`` (from
    :func:`start_states`) are constants. ``rows_y`` int [B, L] are the targets.
    """
    b = rows_1h.shape[0]
    idx, offset = subsequence_layout(t0, u, n)
    x_sub = tf.transpose(tf.gather(rows_1h, idx, axis=1), [1, 0, 2, 3])  # [u, B, n, 2]
    logits, _ = backend.unroll(params, tf.reshape(x_sub, [u * b, n, 2]), starts)  # [u*B, n, 2]
    pick = tf.one_hot(offset, n, dtype=logits.dtype)[:, None, :, None]  # [u, 1, n, 1]
    last = tf.reduce_sum(tf.reshape(logits, [u, b, n, -1]) * pick, axis=2)  # [u, B, 2]
    y = tf.transpose(tf.cast(tf.gather(rows_y, t0 + tf.range(u), axis=1), tf.int32))  # [u, B]
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=last)


def true_epoch_body(backend, opt_name: str, update_every: int | None = None) -> Callable:
    """The un-compiled true-BPTT(n, 1) epoch (``engine.epoch_fn`` compiles and caches it).

    Returns f(params, opt_state, hp, xs[W,B,n] int8, ys[W,B,n] int8, state) ->
    (params, opt_state, losses[U], carry_state) with U = (W*n) // u updates;
    n is the window length of ``xs`` (the backprop length), u = update_every or n.
    carry_state is the forward pass's state after position U*u-n-1 (it lags n
    behind the last loss; training resets the state every epoch anyway).
    """
    def run_epoch(params, opt_state, hp, xs, ys, state):
        n = int(xs.shape[2])
        u = int(update_every or n)
        rows_y = windows_to_rows(ys)
        rows_1h = tf.one_hot(tf.cast(windows_to_rows(xs), tf.int32), 2, dtype=tf.float32)  # [B, L, 2]
        num_updates = int(rows_y.shape[1]) // u

        def grad_step(k, params, state):
            t0 = k * u
            starts, state = start_states(backend, params, rows_1h, state, t0, u, n)
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = tf.reduce_mean(true_step_losses(backend, params, rows_1h, rows_y, starts, t0, u, n))
            return loss, tape.gradient(loss, params), state

        return update_loop(num_updates, opt_name, hp, params, opt_state, state, grad_step)

    return run_epoch
