"""Compiled training and evaluation loops (TensorFlow).

An epoch is ONE compiled computation: a ``tf.while_loop`` over the windows whose
loop variables are the parameters, the optimizer slots and the carried RNN
state. Compiled functions are cached by their static structure (backend,
optimizer, style, XLA), and hyper-parameters enter as tensors, so runs in one
process with the same shapes (other seeds, other learning rates) reuse the
compiled program instead of tracing and compiling again.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from rnn_sweep import optim

_CACHE: dict[tuple, Callable] = {}


def window_loss(logits, y):
    """Mean sparse softmax cross-entropy over every position of the window(s)."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def tf_style_step(backend, params, x, y, state):
    """Loss and gradients of one window, TensorFlow-style truncation BPTT(n, n).

    The state entering the window is a constant (gradient stopped), so the error
    at position j flows back through j+1 cells only.
    """
    with tf.GradientTape() as tape:
        tape.watch(params)
        logits, new_state = backend.unroll(params, x, state)
        loss = window_loss(logits, y)
    grads = tape.gradient(loss, params)
    return loss, grads, tuple(tf.stop_gradient(s) for s in new_state)


def update_loop(num_updates, opt_name: str, hp, params, opt_state, state, grad_step):
    """``num_updates`` optimizer updates as one ``tf.while_loop`` (shared by every style).

    ``grad_step(k, params, state) -> (loss, grads, state)`` computes update k's loss
    and gradients; returns (params, opt_state, losses[num_updates], state).
    """
    losses = tf.TensorArray(tf.float32, size=num_updates)

    def body(k, params, opt_state, state, losses):
        loss, grads, state = grad_step(k, params, state)
        params, opt_state = optim.apply(opt_name, params, grads, opt_state, hp)
        return k + 1, params, opt_state, state, losses.write(k, loss)

    _, params, opt_state, state, losses = tf.while_loop(
        lambda k, *_: k < num_updates, body, (tf.constant(0), params, opt_state, state, losses))
    return params, opt_state, losses.stack(), state


def _epoch_body(backend, opt_name: str, step_fn):
    def run_epoch(params, opt_state, hp, xs, ys, state):
        def grad_step(i, params, state):
            x = tf.one_hot(tf.cast(xs[i], tf.int32), 2, dtype=tf.float32)
            return step_fn(backend, params, x, tf.cast(ys[i], tf.int32), state)

        return update_loop(tf.shape(xs)[0], opt_name, hp, params, opt_state, state, grad_step)

    return run_epoch


def epoch_fn(backend, opt_name: str, style: str = "tf", xla: bool = True, step_fn=None,
             update_every: int | None = None) -> Callable:
    """The compiled epoch for a backend/optimizer/style, built once per process.

    Returns f(params, opt_state, hp, xs[W,B,n] int8, ys[W,B,n] int8, state) ->
    (params, opt_state, losses[U], final_state). TF style: U = W windows.
    ``style="true"``: BPTT(n, 1), U = (W*n) // update_every updates (see
    :mod:`rnn_sweep.truncation`; update_every None = n, so U = W).
    """
    key = ("epoch", backend.name, backend.cell, backend.state_size, opt_name, style, xla, update_every)
    if key not in _CACHE:
        if style == "true":
            from rnn_sweep.truncation import true_epoch_body

            body = true_epoch_body(backend, opt_name, update_every)
        else:
            body = _epoch_body(backend, opt_name, step_fn or tf_style_step)
        # autograph=False: the loops are explicit tf.while_loops and the unrolls static
        # Python loops, so autograph's source conversion only costs tracing time
        # (about a third of the trace, i.e. of a one-epoch run's overhead; notes/perf.md).
        _CACHE[key] = tf.function(body, jit_compile=xla, autograph=style == "true")
    return _CACHE[key]


def predict_fn(backend, xla: bool = True) -> Callable:
    """Compiled forward pass over windows with carried state (no gradients).

    Returns f(params, xs[W,B,n] int8, state) -> P(Y=1) float32 [W, B, n].
    """
    key = ("predict", backend.name, backend.cell, backend.state_size, xla)
    if key not in _CACHE:
        def predict(params, xs, state):
            n_windows = tf.shape(xs)[0]
            out = tf.TensorArray(tf.float32, size=n_windows)

            def body(i, state, out):
                x = tf.one_hot(tf.cast(xs[i], tf.int32), 2, dtype=tf.float32)
                logits, state = backend.unroll(params, x, state)
                return i + 1, state, out.write(i, tf.nn.softmax(logits)[..., 1])

            _, _, out = tf.while_loop(lambda i, *_: i < n_windows, body, (tf.constant(0), state, out))
            return out.stack()

        _CACHE[key] = tf.function(predict, jit_compile=xla, autograph=False)  # explicit loop, see epoch_fn
    return _CACHE[key]


def clear_cache() -> None:
    """Forget compiled functions (tests use it to measure compile time)."""
    _CACHE.clear()
