"""Compiled training and evaluation of a pack of K replicas (TensorFlow).

An epoch is ONE compiled computation: a ``tf.while_loop`` over the updates whose
loop variables are the stacked parameters [K, ...], the optimizer slots and the
carried RNN state; the truncation style (:mod:`rnn_sweep.truncation`) supplies
each update's losses and gradients. Compiled functions are cached by their
static structure (backend, cell, state size, optimizer, style, XLA), and
hyper-parameters enter as [K] tensors, so a pack of any seeds and learning rates,
and the next pack of the same shapes in this process, reuse the compiled
program instead of tracing and compiling again (tests/test_compile_reuse.py).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from rnn_sweep import optim, truncation

_CACHE: dict[tuple, Callable] = {}


def update_loop(num_updates, opt_name: str, hp, params, opt_state, state, grad_step):
    """``num_updates`` optimizer updates as one ``tf.while_loop`` (shared by every style).

    ``grad_step(k, params, state) -> (losses [K], grads, state)`` computes update
    k; returns (params, opt_state, losses [num_updates, K], state).
    """
    losses = tf.TensorArray(tf.float32, size=num_updates)

    def body(k, params, opt_state, state, losses):
        loss, grads, state = grad_step(k, params, state)
        params, opt_state = optim.apply(opt_name, params, grads, opt_state, hp)
        return k + 1, params, opt_state, state, losses.write(k, loss)

    _, params, opt_state, state, losses = tf.while_loop(
        lambda k, *_: k < num_updates, body, (tf.constant(0), params, opt_state, state, losses))
    return params, opt_state, losses.stack(), state


def _key(kind: str, backend, *rest) -> tuple:
    return (kind, backend.name, backend.cell, backend.state_size, *rest)


def epoch_fn(backend, opt_name: str, style: str = "tf", xla: bool = True,
             update_every: int | None = None) -> Callable:
    """The compiled pack epoch for a backend/optimizer/style, built once per process.

    Returns f(params [K,...], opt_state, hp {name: [K]}, xs [W,K,B,n] int8,
    ys [W,K,B,n] int8, state [K,B,d]...) -> (params, opt_state, losses [U, K],
    final_state). TF style: U = W windows; true style: U = (W*n) // update_every
    (update_every None = n, so U = W).
    """
    key = _key("epoch", backend, opt_name, style, xla, update_every)
    if key not in _CACHE:
        def run_epoch(params, opt_state, hp, xs, ys, state):
            num_updates, grad_step = truncation.grad_steps(backend, style, xs, ys, update_every)
            return update_loop(num_updates, opt_name, hp, params, opt_state, state, grad_step)

        # autograph=False: the loops are explicit tf.while_loops and the unrolls static
        # Python loops, so autograph's source conversion would only add tracing time
        # (true style, n=10: first epoch 10.7 s instead of 13.9 s with it; issue 12).
        _CACHE[key] = tf.function(run_epoch, jit_compile=xla, autograph=False)
    return _CACHE[key]


def predict_fn(backend, xla: bool = False) -> Callable:
    """Compiled forward pass over windows with carried state (no gradients), for a pack.

    Returns f(params [K,...], xs [W,K,B,n] int8, state) -> P(Y=1) float32 [W, K, B, n].
    """
    key = _key("predict", backend, xla)
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

