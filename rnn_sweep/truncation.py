"""Truncation styles: how far each error is backpropagated, for a pack of K replicas.

Both styles are written as a *gradient step* ``grad_step(k, params, state) ->
(losses [K], grads, state)`` for update k of an epoch; :mod:`rnn_sweep.engine`
runs the steps in one compiled loop with the optimizer. Data come window-major
with the replica axis second: xs, ys int8 [W, K, B, n]. The objective of a step
is the SUM over replicas of each replica's own mean loss: replica k's parameters
only reach its own term, so slice [k] of the gradient is exactly the gradient
replica k would get alone.

**TensorFlow style**, BPTT(n, n) (:func:`tf_style_step`): the row is cut into
windows of n; the state entering a window is a constant (gradient stopped), so
the error at window position j flows back through j+1 cells only.

**True truncated BPTT(n, 1)** (:func:`start_states`, :func:`true_step_losses`):
EVERY error flows back exactly n cells: the loss at step t gets gradient through
cells t-n+1..t, starting from the gradient-stopped state S_{t-n}. One update
covers u = ``update_every`` consecutive steps t0..t0+u-1 (default u = n, so both
styles make the same number of updates, each averaging B*n losses). It is
computed without per-step weight copies or per-loss gradient calls (r2rt's
construction):

1. one forward pass WITHOUT gradient, step by step, gives the start states
   S_{t-n} of all u sub-sequences (its positions lag n behind the losses; its
   last state is carried to the next update);
2. the u sub-sequences x_{t-n+1..t} are batched into one [K, u*B, n] input and
   unrolled once under the gradient tape from those (stopped) states; the loss
   of sub-sequence t is taken at its last step.

Row start (the first n-1 positions of each row of an epoch): there is no history
before position 0, so a loss at t < n-1 gets gradient through the t+1 cells
0..t from the epoch's initial state (the zero state): its sub-sequence is
x_0..x_{n-1} and the loss is read at position t (by causality, cells after t do
not affect it). This is exactly what TF style does for the first window.

Works with any functional backend (``unroll(params, x, state)``, see
:mod:`rnn_sweep.models`); the Keras ``model.fit`` backend cannot express true
BPTT and is rejected by ``config.validate``.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def replica_losses(logits, y):
    """Each replica's mean sparse softmax cross-entropy: logits [K, ..., 2], y [K, ...] -> [K]."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    return tf.reduce_mean(tf.reshape(ce, [tf.shape(ce)[0], -1]), axis=1)


def tf_style_step(backend, params, x, y, state):
    """Losses [K], gradients and carried state of one window, BPTT(n, n).

    x float32 [K, B, n, 2] one-hot, y int32 [K, B, n], state tuple [K, B, d].
    """
    with tf.GradientTape() as tape:
        tape.watch(params)
        logits, new_state = backend.unroll(params, x, state)
        losses = replica_losses(logits, y)
        total = tf.reduce_sum(losses)  # d total / d params[k] = d losses[k] / d params[k]
    grads = tape.gradient(total, params)
    return losses, grads, tuple(tf.stop_gradient(s) for s in new_state)


def windows_to_rows(xs):
    """Windows [W, K, B, n] back to contiguous rows [K, B, W*n] (the positions TF style trains on)."""
    w, k, b, n = xs.shape
    return tf.reshape(tf.transpose(xs, [1, 2, 0, 3]), [k, b, w * n])


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

    ``rows_1h`` float32 [K, B, L, 2] are the one-hot rows; ``state`` [K, B, d] is
    the state after position t0-n-1 (before position 0 it is the epoch's initial
    state, kept unchanged while positions are negative).

    Returns:
        (starts, carry): starts is a tuple of state tensors [K, u*B, ...] where
        row block j is the state after position t0+j-n, i.e. the start state of
        the sub-sequence whose loss is at t0+j; carry is the state after t0+u-n-1.
    """
    # A symbolic loop, not a Python one: these steps need no gradient, so nothing is gained
    # by unrolling them, and the graph XLA compiles stays the same size for any u.
    def body(j, state, acc):
        p = t0 - n + j
        _, new = backend.unroll(params, rows_1h[:, :, tf.maximum(p, 0)][:, :, None, :], state)
        state = tuple(tf.where(p >= 0, s_new, s_old) for s_new, s_old in zip(new, state))
        return j + 1, state, tuple(ta.write(j, s) for ta, s in zip(acc, state))

    acc = tuple(tf.TensorArray(tf.float32, size=u, element_shape=s.shape) for s in state)
    _, state, acc = tf.while_loop(lambda j, *_: j < u, body, (tf.constant(0), tuple(state), acc))

    def blocks(ta):  # [u, K, B, ...] -> [K, u*B, ...], row block j = step j
        st = ta.stack()
        st = tf.transpose(st, [1, 0] + list(range(2, st.shape.rank)))
        return tf.reshape(st, [st.shape[0], -1] + st.shape.as_list()[3:])

    starts = tuple(tf.stop_gradient(blocks(ta)) for ta in acc)
    return starts, tuple(tf.stop_gradient(s) for s in state)


def true_step_losses(backend, params, rows_1h, rows_y, starts, t0, u: int, n: int):
    """Losses [K, u, B] of the steps t0..t0+u-1, each through exactly its n cells.

    Differentiable in ``params`` and in the one-hot rows ``rows_1h`` [K, B, L, 2]
    (the tests check which inputs each loss reaches); ``starts`` (from
    :func:`start_states`) are constants. ``rows_y`` int [K, B, L] are the targets.
    """
    k, b = rows_1h.shape[0], rows_1h.shape[1]
    idx, offset = subsequence_layout(t0, u, n)
    x_sub = tf.transpose(tf.gather(rows_1h, idx, axis=2), [0, 2, 1, 3, 4])  # [K, u, B, n, 2]
    logits, _ = backend.unroll(params, tf.reshape(x_sub, [k, u * b, n, 2]), starts)  # [K, u*B, n, 2]
    pick = tf.one_hot(offset, n, dtype=logits.dtype)[None, :, None, :, None]  # [1, u, 1, n, 1]
    last = tf.reduce_sum(tf.reshape(logits, [k, u, b, n, -1]) * pick, axis=3)  # [K, u, B, 2]
    y = tf.transpose(tf.cast(tf.gather(rows_y, t0 + tf.range(u), axis=2), tf.int32), [0, 2, 1])  # [K, u, B]
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=last)


def tf_style_grad_steps(backend, xs, ys) -> tuple:
    """(number of updates W, grad_step) for TF style over windows xs, ys [W, K, B, n]."""
    def grad_step(i, params, state):
        x = tf.one_hot(tf.cast(xs[i], tf.int32), 2, dtype=tf.float32)
        return tf_style_step(backend, params, x, tf.cast(ys[i], tf.int32), state)

    return tf.shape(xs)[0], grad_step


def true_grad_steps(backend, xs, ys, update_every: int | None = None) -> tuple:
    """(number of updates U, grad_step) for true BPTT(n, 1) over windows xs, ys [W, K, B, n].

    n is the window length (the backprop length), u = update_every or n, U =
    (W*n) // u. The carried state is the forward pass's, lagging n behind the
    losses (training resets the state every epoch anyway).
    """
    n = int(xs.shape[3])
    u = int(update_every or n)
    rows_y = windows_to_rows(ys)
    rows_1h = tf.one_hot(tf.cast(windows_to_rows(xs), tf.int32), 2, dtype=tf.float32)  # [K, B, L, 2]

    def grad_step(k, params, state):
        t0 = k * u
        starts, state = start_states(backend, params, rows_1h, state, t0, u, n)
        with tf.GradientTape() as tape:
            tape.watch(params)
            losses = tf.reduce_mean(true_step_losses(backend, params, rows_1h, rows_y, starts, t0, u, n), axis=[1, 2])
            total = tf.reduce_sum(losses)
        return losses, tape.gradient(total, params), state

    return int(rows_y.shape[2]) // u, grad_step


def grad_steps(backend, style: str, xs, ys, update_every: int | None = None) -> tuple[object, Callable]:
    """The style's (number of updates, grad_step) for one epoch of windows xs, ys [W, K, B, n]."""
    if style == "true":
        return true_grad_steps(backend, xs, ys, update_every)
    if style == "tf":
        return tf_style_grad_steps(backend, xs, ys)
    raise ValueError(f"truncation.style={style!r}: allowed values are tf, true")
